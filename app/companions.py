"""Companion files: the extra files a plugin declares it reads, checked before the sandbox allows them.

A plugin reads nothing of its folder unless its metadata block names it
(``files = ["example_plugin.toml"]``). Each name must be a regular file inside the
plugin's folder, reached without a symlink, with no other hard link, and outside
sandchat's own configuration and data directories: a plugin folder may be
``$SANDCHAT_HOME`` itself (keys.json, grants.json, logs.db) or the user's home.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from app.config import Paths

__all__ = ["CompanionError", "companion_paths"]


class CompanionError(ValueError):
    """Raised when a declared companion file may not be given to the plugin; says why."""


def companion_paths(folder: Path, declared: tuple[str, ...], paths: Paths) -> list[str]:
    """The absolute paths of the declared companion files, each checked; raises CompanionError."""
    folder = folder.resolve()
    own_dirs = [d.resolve() for d in (paths.config_dir, paths.data_dir)]
    user_plugins = paths.user_plugins.resolve()
    return [str(_checked(folder, name, own_dirs, user_plugins)) for name in declared]


def _checked(folder: Path, name: str, own_dirs: list[Path], user_plugins: Path) -> Path:
    path = folder / name
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise CompanionError(f"declares companion file {name!r}, which cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise CompanionError(f"declares companion file {name!r}, which is not a regular file (symlinks and folders are not allowed)")
    if path.resolve() != path:
        raise CompanionError(f"declares companion file {name!r}, which is reached through a symlink")
    if info.st_nlink > 1:
        # A hard link makes any file of the same file system look like a file of the folder.
        raise CompanionError(f"declares companion file {name!r}, which has {info.st_nlink} hard links")
    for own in own_dirs:
        if path.is_relative_to(own) and not path.is_relative_to(user_plugins):
            raise CompanionError(f"declares companion file {name!r}, which lies in sandchat's own folder {own}")
    return path
