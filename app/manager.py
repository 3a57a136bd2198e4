"""PluginManager: the registry of plugins and the lifecycle of their handles.

It discovers the plugin files in its folders (and rescans them: :meth:`refresh`,
:meth:`watch`), hands out one handle per plugin name (a ``runner.Plugin``, which is an
``LLMClient`` whose process starts on first use), and stops and drops them. It holds the
user's stores (grants, keys, switches, the health log); what a start may do is decided
by ``app.access`` (may it start, under which grant) and ``app.policy`` (the launch
config), each time the runner starts or restarts a plugin.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.access import check_startable, is_disabled
from app.discovery import Discovery, PluginFile, discover, find
from app.files import file_stamp
from app.grants import GrantStore
from app.keys import KeyStore
from app.settings import Settings
from app.settings import load as load_settings
from app.switches import SwitchStore

if TYPE_CHECKING:
    import runner
    from app.envs import EnvStore
    from app.healthlog import HealthLog

# The runner (and through it subprocess, msgpack, concurrent.futures), the launch policy and
# the health log (sqlite3) are imported by the methods that start or report on plugins, not
# at import: ``sandchat plugins list`` and the other commands that start no plugin never load them.

__all__ = ["SHIPPED_DIR", "Changes", "PluginManager"]

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "llm_plugins"


@dataclass(frozen=True)
class Changes:
    """What a rescan of the plugin folders found, by plugin name."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


class PluginManager:
    """Finds plugins in folders and runs each in its own sandboxed process on demand."""

    def __init__(
        self,
        plugin_dirs: Iterable[str | os.PathLike[str]] = (),
        home: str | os.PathLike[str] | None = None,
        *,
        settings: Settings | None = None,
        environ: Mapping[str, str] | None = None,
        shipped_dir: Path | None = SHIPPED_DIR,
        deadlines: runner.Deadlines | None = None,
        restart_policy: runner.RestartPolicy | None = None,
        timeout: float | None = None,
        envs_dir: Path | None = None,
    ) -> None:
        """Plugins from the shipped folder, the user's folder and ``plugin_dirs``.

        With ``home=H`` the manager reads what ``sandchat`` reads with ``SANDCHAT_HOME=H``:
        ``H/config.toml`` (``default_plugin``, ``disabled``, ``allow_unsandboxed``,
        ``[plugins.NAME]`` deadlines and ``max_reply``), the grants, keys and switches in
        ``H``, and plugins in ``H/plugins``. It reads no environment variable unless given
        ``environ`` (say ``os.environ``): then ``SANDCHAT_*`` settings and API keys come
        from it as they do for the CLI. ``settings=`` (from ``app.settings.load``) replaces
        all of that. A bad ``config.toml`` raises ``app.settings.SettingsError``.

        ``timeout`` (seconds, the CLI's ``--timeout``) caps every generation deadline of
        every plugin this manager starts.

        ``envs_dir``: where plugins' dependency environments are (default: the data
        directory's ``envs/``; ``plugins check`` runs a temporary home over the real ones).
        """
        if settings is None:
            if home is None:
                raise ValueError("PluginManager needs home= (a directory for config and data) or settings=")
            settings = load_settings(environ or {}, home=home)
        self.settings = settings
        self.paths = settings.paths
        self._default_deadlines = deadlines
        self._restart_policy = restart_policy
        self._timeout = timeout
        self.shipped_dir = shipped_dir
        self._folders = ([(shipped_dir, "shipped")] if shipped_dir is not None else []) + [(self.paths.user_plugins, "user")]
        self._folders += [(Path(d), "dir") for d in plugin_dirs]
        self.grants = GrantStore(self.paths.grants_file)
        self.keys = KeyStore(self.paths.keys_file)
        self.switches = SwitchStore(self.paths.switches_file)
        self._events: HealthLog | None = None
        self._envs_dir = envs_dir if envs_dir is not None else self.paths.envs
        self._envs: EnvStore | None = None
        self._discovery: Discovery | None = None
        self._handles: dict[str, runner.Plugin] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._stopped = threading.Event()
        self._watcher: threading.Thread | None = None
        self._hardened = False

    @property
    def deadlines(self) -> runner.Deadlines:
        if self._default_deadlines is None:
            import runner

            self._default_deadlines = runner.Deadlines()
        return self._default_deadlines

    @property
    def timeout(self) -> float | None:
        """The cap on every generation deadline (``timeout=``), fixed when the manager is made."""
        return self._timeout

    @property
    def restart_policy(self) -> runner.RestartPolicy:
        if self._restart_policy is None:
            import runner

            self._restart_policy = runner.RestartPolicy()
        return self._restart_policy

    @property
    def events(self) -> HealthLog:
        """The health event log (SQLite, opened on first use)."""
        if self._events is None:
            from app.healthlog import HealthLog

            self._events = HealthLog(self.paths.health_db)
        return self._events

    @property
    def envs(self) -> EnvStore:
        """The plugins' dependency environments (``app.envs``; packaging is imported on first use)."""
        if self._envs is None:
            from app.envs import EnvStore

            self._envs = EnvStore(self._envs_dir)
        return self._envs

    def __enter__(self) -> PluginManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- discovery -----------------------------------------------------------------------

    @property
    def discovery(self) -> Discovery:
        if self._discovery is None:
            self._discovery = discover(self._folders)
        return self._discovery

    def refresh(self) -> Changes:
        """Rescan the plugin folders; a changed or removed plugin's process is stopped.

        A changed plugin starts again, from its new file and under its current grants,
        on its next use.
        """
        with self._lock:
            old = self.discovery
            new = self._discovery = discover(self._folders, previous=old)
        changes = Changes(
            added=tuple(sorted(set(new.plugins) - set(old.plugins))),
            removed=tuple(sorted(set(old.plugins) - set(new.plugins))),
            changed=tuple(sorted(n for n in set(old.plugins) & set(new.plugins) if old.plugins[n] != new.plugins[n])),
        )
        for name in changes.removed + changes.changed:
            self.forget(name)
        return changes

    def watch(self, on_change: Callable[[Changes], None] | None = None, interval: float = 0.5) -> None:
        """Refresh every ``interval`` seconds on a background thread until ``close()``."""
        _ = self.discovery  # the baseline the first refresh compares against: now, not later

        def loop() -> None:
            while not self._stopped.wait(interval):
                changes = self.refresh()
                if changes and on_change is not None:
                    on_change(changes)

        self._watcher = threading.Thread(target=loop, name="plugin-watch", daemon=True)
        self._watcher.start()

    def names(self) -> list[str]:
        """Names of every discovered plugin, sorted (disabled ones included)."""
        return [] if self.settings.no_plugins else self.discovery.names()

    def is_disabled(self, name: str) -> bool:
        """Whether the user turned plugin ``name`` off (see ``app.access.is_disabled``)."""
        return is_disabled(name, self.settings, self.switches)

    def state(self, name: str) -> str:
        """The plugin's state in the one vocabulary of ``runner.STATES``, without starting it."""
        if self.is_disabled(name):
            return "disabled"
        handle = self._handles.get(name)
        if handle is not None:
            return handle.state
        plugin_file = self.discovery.plugins.get(name)
        return "failed" if plugin_file is None or plugin_file.metadata_error else "stopped"

    def plugin_file(self, name: str) -> PluginFile:
        """The discovered file of plugin ``name``; raises ``SafeMode``, ``Ambiguous`` or ``NotInstalled``."""
        from app.refusals import Ambiguous, NotInstalled, SafeMode

        if self.settings.no_plugins:
            raise SafeMode(name)
        if self._discovery is None:  # a command that uses this plugin alone: read no other file
            only = find(self._folders, name)
            if only is not None:
                return only
        found = self.discovery.plugins.get(name)
        if found is not None:
            return found
        conflict = self.discovery.conflicts.get(name)
        if conflict:
            raise Ambiguous(name, [f.path for f in conflict])
        raise NotInstalled(name, self.names())

    # -- launching -----------------------------------------------------------------------

    def decide(self, name: str) -> runner.PluginConfig:
        """Plugin ``name``'s launch decision as ``handle`` would start it now, refusals included (``app.refusals``),
        for a caller that hands it to another process (the sandchat agent) instead of starting it here."""
        self._check_startable(name)
        return self.launch_config(name)

    def _check_startable(self, name: str) -> None:
        """Raise the refusal (``app.refusals``) when plugin ``name`` may not start now."""
        from app.refusals import ShuttingDown

        if self._closed:
            raise ShuttingDown(name)
        check_startable(name, self.settings, self.switches)

    def launch_config(self, name: str) -> runner.PluginConfig:
        """The runner configuration for plugin ``name``'s next start (``app.policy`` decides it)."""
        from app.policy import launch_config

        return launch_config(self.plugin_file(name), self.settings, self.grants, self.keys, self.deadlines, self.timeout, lambda: self.envs)

    # -- handles -------------------------------------------------------------------------

    def handle(self, name: str) -> runner.Plugin:
        """The handle of plugin ``name`` (a ``runner.Plugin``, an ``LLMClient``); its process starts on first use.

        Raises a refusal (``app.refusals``) when the plugin may not start at all now.
        """
        import runner
        from app.refusals import ShuttingDown

        self._check_startable(name)
        known = self.discovery.plugins.get(name)
        if known is not None and name in self._handles and file_stamp(known.path) != known.stamp:
            self.refresh()  # its file changed since we last looked: restart it from the new file
        with self._lock:
            if self._closed:  # looked at again under the lock that close() takes: no handle outlives it
                raise ShuttingDown(name)
            existing = self._handles.get(name)
            if existing is not None:
                return existing
            if not self._hardened:
                runner.harden_host()
                self._hardened = True
            # Each start and restart decides again, from the file as it is then.
            handle = runner.Plugin(lambda: self.launch_config(name), policy=self.restart_policy, on_event=self.events.record)
            self._handles[name] = handle
            return handle

    def forget(self, name: str) -> None:
        """Stop plugin ``name`` and drop its handle: the next use rebuilds its configuration."""
        with self._lock:
            handle = self._handles.pop(name, None)
        if handle is not None:
            handle.close(f"its file changed or was removed; get a new handle: manager.handle({name!r})")

    def handles(self) -> dict[str, runner.Plugin]:
        """Every handle given out and not forgotten, by name: running or not (see each one's ``state``)."""
        return dict(self._handles)

    def check_idle(self) -> dict[str, bool]:
        """Ping every running, idle plugin (a liveness check); busy ones are left alone."""
        results = {name: handle.check_alive() for name, handle in list(self._handles.items())}
        return {name: ok for name, ok in results.items() if ok is not None}

    def close(self) -> None:
        """Stop every plugin process for good; safe to call twice, and from any thread.

        Every handle, obtained before or during the close, refuses calls afterwards
        (``PluginUnavailable``, reason ``"closed"``), and ``handle()`` refuses new ones.
        """
        with self._lock:
            self._closed = True
            handles = list(self._handles.values())
        self._stopped.set()
        for handle in handles:
            handle.close()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(5.0)  # it wakes at once from its wait; a refresh in flight is bounded by the disk
