"""Agent paths: the private directory of the agent's socket and lock file, checked before use.

The socket lives in ``$XDG_RUNTIME_DIR/sandchat`` when that runtime directory is usable,
else in ``<data dir>/agent``. Either way the directory is created mode 0700 and refused if
another uid owns it or group/others may enter it: the socket carries keys (inside launch
decisions), so reaching it must be the user's alone, before the peer-uid check even runs.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from app.agent.errors import UnsafeDirectory

SOCKET_NAME = "agent.sock"
LOCK_NAME = "agent.lock"
LOG_NAME = "agent.log"


@dataclass(frozen=True)
class AgentPaths:
    """Where one user's agent listens, locks and logs."""

    directory: Path

    def __post_init__(self) -> None:
        if not self.directory.is_absolute():
            raise ValueError(f"the agent directory must be absolute: {self.directory}")

    @property
    def socket(self) -> Path:
        return self.directory / SOCKET_NAME

    @property
    def lock(self) -> Path:
        return self.directory / LOCK_NAME

    @property
    def log(self) -> Path:
        return self.directory / LOG_NAME


def choose(runtime_dir: str | None, data_dir: Path) -> AgentPaths:
    """The agent's paths: under a usable ``XDG_RUNTIME_DIR`` (the user's, 0700), else the data dir."""
    if runtime_dir and _is_private_dir(Path(runtime_dir)):
        return AgentPaths(Path(runtime_dir) / "sandchat")
    return AgentPaths(data_dir.absolute() / "agent")


def ensure_private(paths: AgentPaths) -> AgentPaths:
    """Create the directory 0700 if missing; raise ``UnsafeDirectory`` unless only the user can enter it."""
    try:
        paths.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(paths.directory)
    except OSError as error:
        raise UnsafeDirectory(f"cannot create {paths.directory}: {error.strerror}") from error
    problem = _problem(info)
    if problem:
        raise UnsafeDirectory(f"{paths.directory} {problem}")
    return paths


def _is_private_dir(path: Path) -> bool:
    try:
        return _problem(os.lstat(path)) is None
    except OSError:
        return False


def _problem(info: os.stat_result) -> str | None:
    """Why a directory with this status is not private to this user, or None."""
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"  # a symlink included: lstat does not follow it
    if info.st_uid != os.getuid():
        return f"is owned by uid {info.st_uid}, not {os.getuid()}"
    if info.st_mode & 0o077:
        return f"is open to group or others (mode {stat.S_IMODE(info.st_mode):o})"
    return None
