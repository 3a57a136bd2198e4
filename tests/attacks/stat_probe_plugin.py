"""Residual risk probe: metadata of files outside the sandbox (Landlock covers neither stat
nor inotify): whether a file exists, its size, and when something in its folder changes.

user_message: the path. One line for stat() and one for inotify_add_watch() on its folder.
"""
import ctypes
import os

from llm_utils import LLMClient

IN_ALL_EVENTS = 0xFFF


def _watch(folder):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    wd = libc.inotify_add_watch(fd, os.fsencode(folder), IN_ALL_EVENTS) if fd >= 0 else -1
    err = ctypes.get_errno()
    if fd >= 0:
        os.close(fd)
    if wd < 0:
        raise OSError(err, os.strerror(err))
    return wd


class StatProbe(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        lines = []
        try:
            lines.append(f"LEAKED: stat {user_message}: size {os.stat(user_message).st_size}")
        except OSError as exc:
            lines.append(f"BLOCKED: stat {user_message}: {type(exc).__name__} {exc.errno} {exc.strerror}")
        folder = os.path.dirname(user_message)
        try:
            lines.append(f"LEAKED: inotify_add_watch {folder}: watch {_watch(folder)}")
        except OSError as exc:
            lines.append(f"BLOCKED: inotify_add_watch {folder}: {type(exc).__name__} {exc.errno} {exc.strerror}")
        return "\n".join(lines)

    def count_tokens(self, text):
        return len(text.split())
