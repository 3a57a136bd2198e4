"""Companion files: the extra files a plugin declares it reads, checked before the sandbox allows them.

A plugin reads nothing of its folder unless its metadata block names it
(``files = ["example_plugin.toml"]``), and it may name only what is visibly its own:
a file beside it whose name starts with its file stem and a dot (``example_plugin.toml``,
``example_plugin.vocab.json``), or a file under a folder named after that stem
(``example_plugin/model.bin``). A plugin folder may be ``$SANDCHAT_HOME`` itself
(keys.json, grants.json, logs.db), the user's home (``.ssh/id_ed25519``) or a folder of
other plugins (their ``*.toml``): none of those names qualify. Each file must also be a
regular file reached without a symlink, with no other hard link, and outside sandchat's
own configuration and data directories (the user plugin folder aside).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from app.settings import Paths

__all__ = ["CompanionError", "companion_paths"]


class CompanionError(ValueError):
    """Raised when a declared companion file may not be given to the plugin; says why."""


def companion_paths(plugin_path: Path, declared: tuple[str, ...], paths: Paths) -> list[str]:
    """The absolute paths of ``plugin``'s declared companion files, each checked; raises CompanionError."""
    folder = plugin_path.parent.resolve()
    own_dirs = [d.resolve() for d in (paths.config_dir, paths.data_dir)]
    user_plugins = paths.user_plugins.resolve()
    checked = (_checked(folder, plugin_path.stem, name, own_dirs, user_plugins) for name in declared)
    return [str(path) for path in checked if path is not None]


def _is_its_own(stem: str, name: str) -> bool:
    parts = name.split("/")
    if any(not part or part.startswith(".") for part in parts):
        return False  # hidden files and folders are never a plugin's (.ssh, .aws, .git)
    if len(parts) == 1:
        return name.startswith(stem + ".") and name != stem + ".py"
    return parts[0] == stem


def _checked(folder: Path, stem: str, name: str, own_dirs: list[Path], user_plugins: Path) -> Path | None:
    """The path of one declared companion, None when it does not exist (companions may be optional)."""
    if not _is_its_own(stem, name):
        raise CompanionError(
            f"declares companion file {name!r}, which is not its own: name files {stem}.* beside it or put them under {stem}/"
        )
    path = folder / name
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
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
