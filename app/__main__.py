"""``python -m app``: the sandchat command line."""

import sys

from app.entry import main

sys.exit(main())
