"""Leaves with os._exit(4) while being imported, after a last word on stderr."""
import os
import sys

print("hard-exit plugin giving up at import", file=sys.stderr, flush=True)
os._exit(4)
