"""The command line's exit statuses, in one place: every command returns one of these.

0 on success, 1 when a plugin failed (or the disk did), 2 for a usage error (a bad
option or value, an unknown plugin), 130 after Ctrl-C, as a shell reports SIGINT, and
141 when the reader of the output left (a pipe into ``head``), as a shell reports SIGPIPE.
"""

from __future__ import annotations

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PLUGIN", "EXIT_READER_LEFT", "EXIT_USAGE"]

EXIT_OK, EXIT_PLUGIN, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130
EXIT_READER_LEFT = 141  # 128 + SIGPIPE: what a shell reports for `git log | head -1`'s git, so `set -o pipefail` sees the same
