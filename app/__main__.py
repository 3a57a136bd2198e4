"""``python -m app``: the sandchat command line."""

import sys

from app.cli import main

sys.exit(main())
