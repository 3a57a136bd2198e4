"""The ``sandchat`` executable's entry point: a warm forker runs ``prompt`` and ``tokens`` when one answers.

Everything else, and those two when no forker answers, is ``app.cli.main`` in this
process. Nothing heavier than the socket module is imported before that choice: the
point of the forker (``app.agent.forker``) is a first byte that waits for no import.
"""

from __future__ import annotations

import os
import sys

from app.argv import HANDED_OVER, command_at

__all__ = ["main"]


def main() -> int:
    argv = sys.argv[1:]
    at = command_at(argv)
    if at < len(argv) and argv[at] in HANDED_OVER and not _agent_off(os.environ.get("SANDCHAT_AGENT_IDLE")):
        from app.agent import handoff

        try:
            code = handoff.run(argv)
        except KeyboardInterrupt:  # Ctrl-C before the worker began: nothing ran yet
            return 130
        if code is not None:
            return code
    from app.cli import main as cli_main

    return cli_main(argv)


def _agent_off(text: str | None) -> bool:
    """SANDCHAT_AGENT_IDLE=0: no agent, so no forker either (any other value is ``app.cli``'s to judge)."""
    try:
        return text is not None and float(text) == 0
    except ValueError:
        return False
