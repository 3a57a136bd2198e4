"""A plugin's traceback goes to the plugin's log, where ``sandchat plugins logs NAME`` shows it.

The command line says what went wrong in one line; the file and line number a plugin's
author needs are in the traceback its child sent (``PluginRaised.remote_traceback``, and
``PluginLoadError``'s for a plugin that fails to load). :func:`log_traceback` appends it
to the same ``<data dir>/logs/NAME.log`` the runner writes the plugin's stderr to, in
the runner's line format, cleaned (it is the plugin's text) and capped.

Both the one-shot commands and the chat call it from their failure paths::

    from app.pluginlog import log_traceback
    log_traceback(settings.paths.plugin_logs, exc)   # exc: the runner.PluginError caught
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import runner
from runner import clean_text

__all__ = ["log_traceback"]

_MAX_CHARS = 64 * 1024  # a traceback is a few KB; a plugin could send megabytes
_MAX_LINES = 200
_RUNNER = str(Path(__file__).resolve().parent.parent / "runner") + os.sep  # the child's own frames: not the plugin's


def log_traceback(log_dir: Path, exc: Exception) -> Path | None:
    """Append the traceback ``exc`` carries from the plugin to the plugin's log; the log's path, or None.

    None when there is no traceback, or the log cannot be written: the log is a
    diagnostic aid, and failing to write it must not change what the command reports.
    """
    name = getattr(exc, "plugin", "")
    traceback = getattr(exc, "remote_traceback", "")
    if not name or not isinstance(traceback, str) or not traceback.strip():
        return None
    lines = _plugin_frames(clean_text(traceback[-_MAX_CHARS:], keep_newlines=True).splitlines())[-_MAX_LINES:]
    prefix = runner.LOG_PREFIX.format(stamp=time.strftime(runner.LOG_TIME_FORMAT), who=runner.LOG_HOST) + f"{name}: "
    text = prefix + clean_text(str(exc), keep_newlines=False) + "; the plugin's traceback:\n"
    text += "".join(f"{prefix}| {line}\n" for line in lines)
    path = log_dir / f"{name}.log"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, text.encode("utf-8", "replace"))  # one append: it never lands inside a line the runner writes
        finally:
            os.close(fd)
    except OSError:
        return None
    return path


def _plugin_frames(lines: list[str]) -> list[str]:
    """The traceback without the frames of sandchat's child runtime, which only say how the call arrived."""
    kept: list[str] = []
    skipping = False
    for line in lines:
        if line.startswith('  File "'):
            skipping = line[len('  File "') :].startswith(_RUNNER)
        elif not line.startswith(" "):
            skipping = False  # "Traceback ...", the exception line, "During handling ..."
        if not skipping:
            kept.append(line)
    return kept
