"""Run configuration for one plugin: deadlines, resource limits, sandbox policy, launch spec.

All frozen dataclasses, validated at construction. The runner reads no environment and
no files to build them: the app decides, the runner obeys.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runner.constants import DEFAULT_MAX_MESSAGE, MAX_SOURCE, PROFILES  # not runner.protocol: a config needs no msgpack
from runner.endpoints import Endpoint, Proxies, parse_endpoint

__all__ = ["DEFAULT_MAX_REPLY", "PROFILES", "Deadlines", "Limits", "PluginConfig", "SandboxPolicy"]

#: The longest answer a plugin may give, in characters (about four million words): past it
#: the host stops the plugin rather than hold an endless stream in memory.
DEFAULT_MAX_REPLY = 16 * 2**20


def _positive(owner: object, **values: float) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{type(owner).__name__}.{name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class Deadlines:
    """Seconds each phase of a plugin's life may take before it is declared stuck."""

    start: float = 30.0  # spawn to hello; importing an SDK can take seconds on a laptop
    first_chunk: float = 60.0  # request to the first streamed chunk; also bounds writing a request
    idle: float = 60.0  # between two streamed chunks
    total: float = 600.0  # a whole generation
    count_tokens: float = 10.0
    ping: float = 5.0
    check: float = 10.0  # a readiness check(): may ask the plugin's server, spends no tokens
    cancel_grace: float = 2.0  # a cancelled call must end this soon, or the process is killed
    stop_grace: float = 2.0  # each step of a stop: shutdown request, then SIGTERM, then SIGKILL

    def __post_init__(self) -> None:
        _positive(self, **{name: getattr(self, name) for name in self.__dataclass_fields__})


@dataclass(frozen=True)
class Limits:
    """Kernel resource limits applied inside the child (see ``runner.sandbox.enforce``)."""

    address_space: int = 4 * 2**30  # below ~1 GiB glibc's thread arenas starve
    data: int = 2 * 2**30
    cpu_seconds: int = 3600  # lifetime CPU, not wall time: wall time is the deadlines' job
    file_size: int = 256 * 2**20
    open_files: int = 256
    tasks: int = 256  # threads (and processes); a cgroup's pids.max, else RLIMIT_NPROC
    memory: int = 4 * 2**30  # a cgroup's memory limit: heap, page cache, memfd and shmem

    def __post_init__(self) -> None:
        _positive(self, **{name: getattr(self, name) for name in self.__dataclass_fields__})

    def as_options(self, caged: bool = False) -> dict[str, int]:
        """The rlimits the child applies; without a cgroup, the task cap becomes RLIMIT_NPROC."""
        options = {
            "as": self.address_space,
            "data": self.data,
            "cpu": self.cpu_seconds,
            "fsize": self.file_size,
            "nofile": self.open_files,
        }
        return options if caged else {**options, "tasks": self.tasks}


@dataclass(frozen=True)
class SandboxPolicy:
    """What a plugin process may touch: its profile, paths, network endpoints and limits.

    ``endpoints`` (network profile only) are the ``HOST:PORT`` grants the host connects
    the plugin to (``runner.endpoints``); strings are parsed here. ``proxies`` are the
    user's, honoured by the host for those connections.
    """

    profile: str = "untrusted"
    read_paths: tuple[str, ...] = ()
    write_paths: tuple[str, ...] = ()
    endpoints: tuple[Endpoint | str, ...] = ()  # strings are parsed here, so this holds Endpoints after
    limits: Limits = field(default_factory=Limits)
    allow_unsandboxed: bool = False  # run even where the kernel lacks Landlock (user opt-in)
    proxies: Proxies = Proxies()
    connect_timeout: float = 30.0  # the longest the host spends on one connect for the plugin

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown sandbox profile {self.profile!r} (expected one of {', '.join(PROFILES)})")
        endpoints = tuple(e if isinstance(e, Endpoint) else parse_endpoint(e) for e in self.endpoints)
        object.__setattr__(self, "endpoints", tuple(dict.fromkeys(endpoints)))
        if self.endpoints and self.profile != "network":
            raise ValueError("network endpoints can only be granted in the network profile")
        if not isinstance(self.proxies, Proxies):
            raise TypeError("SandboxPolicy.proxies must be a runner.endpoints.Proxies")
        _positive(self, connect_timeout=self.connect_timeout)

    @property
    def brokered(self) -> bool:
        """True when the plugin's network goes through the host (the network profile)."""
        return self.profile == "network"

    def as_argv(self, caged: bool = False) -> list[str]:
        argv = ["--profile", self.profile]
        argv += [arg for path in self.read_paths for arg in ("--ro", path)]
        argv += [arg for path in self.write_paths for arg in ("--rw", path)]
        argv += [arg for key, value in self.limits.as_options(caged).items() for arg in ("--limit", f"{key}={value}")]
        return argv + (["--allow-unsandboxed"] if self.allow_unsandboxed else [])


@dataclass(frozen=True)
class PluginConfig:
    """Everything needed to launch and supervise one plugin file.

    ``source`` is the exact code the child runs, sent to it over the channel: the app reads
    the file once, decides the plugin's access from those bytes, and passes both here, so
    no later change of the file (or of a symlink's target) runs under that decision.
    Without it, the runner reads ``path`` when the process starts. ``path`` names the code
    in tracebacks and ``__file__``; the child is not given read access to it.
    """

    name: str
    path: Path
    scratch_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)  # the child's whole environment
    sandbox: SandboxPolicy = field(default_factory=SandboxPolicy)
    deadlines: Deadlines = field(default_factory=Deadlines)
    log_path: Path | None = None
    python: str = sys.executable
    max_message: int = DEFAULT_MAX_MESSAGE
    max_reply: int = DEFAULT_MAX_REPLY  # characters in one answer, streamed or not
    source: bytes | None = None
    # A plugin with an environment of its own (declared dependencies): its import path is
    # those entries and the standard library, without site-packages; the runner's own
    # third-party modules (msgpack) are found in runner_lib_dirs before the sandbox is on.
    env_paths: tuple[str, ...] = ()
    runner_lib_dirs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or any(ch.isspace() or ch in "/\\'\"" for ch in self.name):
            raise ValueError(f"invalid plugin name {self.name!r}")
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "scratch_dir", Path(self.scratch_dir))
        if self.log_path is not None:
            object.__setattr__(self, "log_path", Path(self.log_path))
        if self.max_message < 1024:
            raise ValueError(f"max_message must be at least 1024 bytes, got {self.max_message}")
        if type(self.max_reply) is not int or self.max_reply < 1:
            raise ValueError(f"max_reply must be a positive number of characters, got {self.max_reply!r}")
        for key in ("env_paths", "runner_lib_dirs"):
            object.__setattr__(self, key, tuple(os.fspath(p) for p in getattr(self, key)))
        if self.runner_lib_dirs and not self.env_paths:
            raise ValueError("runner_lib_dirs is only for a plugin with env_paths")
        if self.source is not None and (type(self.source) is not bytes or len(self.source) > MAX_SOURCE):
            raise ValueError(f"source must be bytes of at most {MAX_SOURCE} bytes")

    def code(self) -> bytes:
        """The bytes the child will run: ``source``, or the file as it is now."""
        if self.source is not None:
            return self.source
        with open(self.path, "rb") as f:
            data = f.read(MAX_SOURCE + 1)
        if len(data) > MAX_SOURCE:
            raise ValueError(f"{self.path} is larger than {MAX_SOURCE} bytes")
        return data

    def child_argv(self, root: Path, caged: bool = False, egress_fd: int | None = None) -> list[str]:
        """The command line that starts this plugin's child process.

        ``caged``: it runs in a cgroup of its own; ``egress_fd``: its end of the network
        broker's channel (``runner.egress``), inherited under that number.
        """
        return [
            self.python, "-I", "-S", os.fspath(root / "runner" / "child" / "entry.py"),
            "--root", os.fspath(root), "--plugin", os.fspath(self.path), "--name", self.name,
            "--max-message", str(self.max_message), *self.sandbox.as_argv(caged),
            *(["--egress", str(egress_fd)] if egress_fd is not None else []),
            *(arg for p in self.env_paths for arg in ("--env", p)),
            *(arg for p in self.runner_lib_dirs for arg in ("--runner-lib", p)),
        ]  # fmt: skip
