"""The tests' shared helpers: the CLI as a user runs it, our processes, threads, plugin handles.

Plain functions and classes, imported by the test modules (``from tests.helpers import ...``);
the fixtures built on them live in ``tests/conftest.py``.

- :func:`sandchat` runs ``python -m app ARGS`` with ``SANDCHAT_HOME`` set, as a user would.
- :func:`plugin_processes` finds plugin processes (and unreaped children) by command line.
- :class:`Worker` and :func:`wait_until`: a call on another thread; a condition with a deadline.
- :class:`DirectPlugins` builds ``runner.Plugin`` handles straight from a ``runner.PluginConfig``,
  so a runner test does not depend on the app's discovery, grants or settings.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import runner

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
TEST_PLUGINS = TESTS / "plugins"
HOSTILE_PLUGINS = TESTS / "hostile"
SHIPPED_PLUGINS = ROOT / "llm_plugins"

#: Short deadlines so failure tests finish fast; start stays generous (imports on a busy CI box).
FAST = runner.Deadlines(start=20, first_chunk=3, idle=3, total=5, count_tokens=3, ping=3, cancel_grace=1, stop_grace=1)
MARGIN = 1.0  # scheduling slack on top of a deadline: generous for CI, far below any hang

# -- the command line ------------------------------------------------------------------

#: How the tests run ``sandchat``: this checkout's app, with the test's interpreter.
SANDCHAT = (sys.executable, "-m", "app")


def cli_env(home: Path | str, **env: str) -> dict[str, str]:
    """The whole environment the tests give sandchat: ``PATH``, ``SANDCHAT_HOME=home`` and ``env``.

    The agent is off (``SANDCHAT_AGENT_IDLE=0``) unless ``env`` turns it on: a test that starts
    one must stop it (tests/test_agent_*.py do, in their fixtures), and no other test should.
    """
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SANDCHAT_HOME": str(home), "SANDCHAT_AGENT_IDLE": "0", **env}


def sandchat(
    home: Path,
    *args: str,
    stdin: str | None = None,
    terminal: bool = False,
    cwd: Path | None = None,
    timeout: float = 50,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """``sandchat ARGS`` with ``SANDCHAT_HOME=home`` (and ``env``), its output captured as text.

    Standard input is ``stdin`` (text), a pseudo-terminal with ``terminal=True`` (the chat
    refuses anything else), or else empty (``/dev/null``).
    """
    if not terminal:
        source = None if stdin is not None else subprocess.DEVNULL
        return subprocess.run([*SANDCHAT, *args], input=stdin, stdin=source, capture_output=True, text=True,
                              env=cli_env(home, **env), cwd=cwd, timeout=timeout)  # fmt: skip
    primary, secondary = os.openpty()
    try:
        return subprocess.run([*SANDCHAT, *args], stdin=secondary, capture_output=True, text=True,
                              env=cli_env(home, **env), cwd=cwd, timeout=timeout)  # fmt: skip
    finally:
        os.close(primary)
        os.close(secondary)


def sandchat_bytes(home: Path, *args: str, timeout: float = 50, **env: str) -> subprocess.CompletedProcess[bytes]:
    """``sandchat ARGS`` with its output as bytes: text mode would hide a CR or a bad byte."""
    return subprocess.run([*SANDCHAT, *args], stdin=subprocess.DEVNULL, capture_output=True, env=cli_env(home, **env), timeout=timeout)


# -- processes -------------------------------------------------------------------------


def processes() -> Iterator[tuple[int, list[bytes], str]]:
    """Every process on the machine: its pid, the fields of its ``stat`` after the name, its command line.

    The fields start with the state (``b"Z"`` for a zombie), then the parent's pid, the
    process group and the session. A zombie's command line is empty. Processes that end
    while they are read are left out.
    """
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        yield int(entry.name), fields, cmdline


def parent_of(pid: int) -> int | None:
    """The pid of ``pid``'s parent, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def cmdline_of(pid: int) -> str | None:
    """The command line of ``pid``, its arguments joined by spaces; None if it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def plugin_processes(marker: str = "") -> list[tuple[int, str]]:
    """Processes (zombies included) running sandchat's child entry point with ``marker`` in argv.

    A zombie has no command line left: every unreaped child of this process counts.
    """
    me = str(os.getpid()).encode()
    return [
        (pid, cmdline or "<zombie>")
        for pid, fields, cmdline in processes()
        if ("runner/child/entry.py" in cmdline and marker in cmdline) or fields[0] == b"Z" and fields[1] == me
    ]


def live_plugin_processes(marker: str) -> list[tuple[int, str]]:
    """Live plugin processes whose command line names ``marker`` (say, this test's home).

    Unreaped children of the test process are left to the autouse leak check, which
    knows which of them were there before the test (other tests may have left some).
    """
    return [(pid, cmd) for pid, cmd in plugin_processes(marker) if marker in cmd]


def gone(pid: int) -> bool:
    """True when no process ``pid`` exists (reaped, not merely dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# -- threads ---------------------------------------------------------------------------


class Worker(threading.Thread):
    """Runs ``job`` on its own thread and keeps its result or exception, and when it ended."""

    def __init__(self, job: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.job = job
        self.result: Any = None
        self.error: BaseException | None = None
        self.ended_at: float | None = None

    def run(self) -> None:
        try:
            self.result = self.job()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.error = exc
        finally:
            self.ended_at = time.monotonic()


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` every 5 ms until it is truthy; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


def join_through_ctrl_c(threads: Iterable[threading.Thread]) -> None:
    """Join every thread, however many SIGINTs (KeyboardInterrupts) land on this one meanwhile."""
    for thread in threads:
        while thread.is_alive():
            try:
                thread.join(5)
            except KeyboardInterrupt:
                pass


# -- plugin handles without the app ----------------------------------------------------

#: What every plugin process reads besides the Python installation, as ``app.manager`` grants it:
#: the shared libraries, the loader's cache, the time zone, randomness.
_SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/etc/ld.so.cache", "/etc/localtime", "/dev/urandom")


def _python_paths() -> list[str]:
    import site

    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()]
    return [p for p in dict.fromkeys(paths) if p]


def sandbox_policy(scratch: Path, **overrides: Any) -> runner.SandboxPolicy:
    """The untrusted profile as the app builds it: read the system, Python, llm_utils and the
    runner; write only the plugin's scratch folder (and ``/dev/null``). ``overrides`` replace fields."""
    read = (*_SYSTEM_READ, *_python_paths(), str(ROOT / "llm_utils.py"), str(ROOT / "runner"))
    fields: dict[str, Any] = {"profile": "untrusted", "read_paths": tuple(dict.fromkeys(read)), "write_paths": (str(scratch), "/dev/null")}
    return runner.SandboxPolicy(**{**fields, **overrides})


def plugin_config(
    path: Path, home: Path, *, name: str | None = None, deadlines: runner.Deadlines = FAST, **fields: Any
) -> runner.PluginConfig:
    """A ``PluginConfig`` for the plugin file ``path``, laid out under ``home`` as the app lays it
    out under ``SANDCHAT_HOME``: scratch in ``home/scratch/NAME``, the log in ``home/logs/NAME.log``.

    ``name`` defaults to the file's stem less ``_plugin``; ``fields`` replace the config's others.
    """
    name = name or (path.stem[: -len("_plugin")] if path.stem.endswith("_plugin") else path.stem)
    scratch = home / "scratch" / name
    defaults: dict[str, Any] = {
        "env": {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(scratch), "TMPDIR": str(scratch)},
        "sandbox": sandbox_policy(scratch),
        "log_path": home / "logs" / f"{name}.log",
    }
    return runner.PluginConfig(name=name, path=path, scratch_dir=scratch, deadlines=deadlines, **{**defaults, **fields})


class DirectPlugins:
    """``runner.Plugin`` handles built straight from a ``PluginConfig``: no manager, no discovery, no grants.

    ``client(NAME)`` finds ``NAME_plugin.py`` in ``folders`` and returns one handle per name
    (like ``PluginManager.client``), its process started on first use; ``close()`` stops them
    all. ``options`` gives a plugin's own config fields (``{"endless": {"max_reply": ...}}``).
    Every handle's events are kept: ``events(NAME)`` lists them, as the health log would.
    """

    def __init__(
        self,
        home: Path,
        *,
        deadlines: runner.Deadlines = FAST,
        policy: runner.RestartPolicy | None = None,
        folders: Sequence[Path] = (TEST_PLUGINS, SHIPPED_PLUGINS),
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.home = home
        self.deadlines = deadlines
        self.policy = policy
        self.folders = tuple(folders)
        self.options = dict(options or {})
        self._clients: dict[str, runner.Plugin] = {}
        self._events: list[tuple[str, str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        for folder in self.folders:
            if (folder / f"{name}_plugin.py").is_file():
                return folder / f"{name}_plugin.py"
        raise LookupError(f"no {name}_plugin.py in {', '.join(map(str, self.folders))}")

    def config(self, name: str) -> runner.PluginConfig:
        return plugin_config(self.path(name), self.home, name=name, deadlines=self.deadlines, **self.options.get(name, {}))

    def handle(self, name: str) -> runner.Plugin:
        with self._lock:
            if name not in self._clients:
                runner.harden_host()  # as the app does before its first plugin: the reaper of orphans
                self._clients[name] = runner.Plugin(self.config(name), policy=self.policy, on_event=self._record)
            return self._clients[name]

    def _record(self, plugin: str, event: str, details: dict[str, Any]) -> None:
        with self._lock:
            self._events.append((plugin, event, details))

    def events(self, name: str) -> list[str]:
        """The events plugin ``name``'s handle reported, oldest first."""
        with self._lock:
            return [event for plugin, event, _ in self._events if plugin == name]

    def scratch(self, name: str) -> Path:
        """The plugin's working directory (tests steer some plugins with files in it), made now."""
        path = self.home / "scratch" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
        for client in clients:
            client.close()

    def __enter__(self) -> DirectPlugins:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
