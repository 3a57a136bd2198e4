"""PluginManager: the app's one entry to plugins — discover, configure, start lazily, report.

It turns a discovered plugin file plus the user's grants into a runner
``PluginConfig`` (sandbox profile, paths, environment) and hands out ``Plugin``
handles, which are ``LLMClient`` objects. Plugins start on first use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import site
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.companions import CompanionError, companion_paths
from app.config import HOST_ENV_PASSTHROUGH, Settings
from app.config import load as load_settings
from app.discovery import Discovery, Metadata, MetadataError, PluginFile, discover, metadata_of
from app.files import file_stamp
from app.grants import Grant, GrantStore, Lapsed, file_sha256, shipped_hashes
from app.keys import KeyStore
from app.switches import SwitchStore

if TYPE_CHECKING:
    import runner
    from app.healthlog import HealthLog

# The runner (and through it subprocess, msgpack, concurrent.futures) and the health log
# (sqlite3) are imported by the methods that start or report on plugins, not at import:
# ``sandchat plugins list`` and the other commands that start no plugin never load them.

__all__ = ["SHIPPED_DIR", "Access", "Changes", "PluginManager"]

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "llm_plugins"
_SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/etc/ld.so.cache", "/etc/localtime", "/dev/urandom")
# Certificates, and the service and protocol names some clients look up. Not the resolver's
# files (resolv.conf, hosts, nsswitch.conf, gai.conf): the host resolves every name.
_NETWORK_READ = ("/etc/ssl", "/etc/ca-certificates", "/etc/pki", "/etc/services", "/etc/protocols")
# Not the proxy variables: the host connects through the user's proxy (runner.egress), and a
# plugin that saw them would try to reach the proxy itself, which is not granted.
_NETWORK_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")


@dataclass(frozen=True)
class Access:
    """What one plugin may do right now: its profile, the grant behind it, or why it lapsed."""

    profile: str
    grant: Grant | None = None
    lapsed: Lapsed | None = None

    @property
    def network(self) -> tuple[str, ...]:
        return self.grant.network if self.grant else ()

    @property
    def env(self) -> tuple[str, ...]:
        return self.grant.env if self.grant else ()


@dataclass(frozen=True)
class Changes:
    """What a rescan of the plugin folders found, by plugin name."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def describe(self) -> str:
        parts = [
            f"{word} {', '.join(names)}"
            for word, names in (("added", self.added), ("changed", self.changed), ("removed", self.removed))
            if names
        ]
        return "plugins " + "; ".join(parts)


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
    ) -> None:
        """Plugins from the shipped folder, the user's folder and ``plugin_dirs``.

        With ``home=H`` the manager reads what ``sandchat`` reads with ``SANDCHAT_HOME=H``:
        ``H/config.toml`` (``default_plugin``, ``disabled``, ``allow_unsandboxed``,
        ``[plugins.NAME]`` deadlines and ``max_reply``), the grants, keys and switches in
        ``H``, and plugins in ``H/plugins``. It reads no environment variable unless given
        ``environ`` (say ``os.environ``): then ``SANDCHAT_*`` settings and API keys come
        from it as they do for the CLI. ``settings=`` (from ``app.config.load``) replaces
        all of that. A bad ``config.toml`` raises ``app.config.SettingsError``.
        """
        if settings is None:
            if home is None:
                raise ValueError("PluginManager needs home= (a directory for config and data) or settings=")
            settings = load_settings(environ or {}, home=home)
        self.settings = settings
        self.paths = settings.paths
        self._default_deadlines = deadlines
        self._restart_policy = restart_policy
        self.timeout: float | None = None  # caps every generation deadline (the CLI's --timeout)
        self.shipped_dir = shipped_dir
        self._folders = ([(shipped_dir, "shipped")] if shipped_dir is not None else []) + [(self.paths.user_plugins, "user")]
        self._folders += [(Path(d), "dir") for d in plugin_dirs]
        self.grants = GrantStore(self.paths.grants_file)
        self.keys = KeyStore(self.paths.keys_file)
        self.switches = SwitchStore(self.paths.switches_file)
        self._events: HealthLog | None = None
        self._discovery: Discovery | None = None
        self._clients: dict[str, runner.Plugin] = {}
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
        return name in self.settings.disabled or name in self.switches.disabled()

    def state(self, name: str) -> str:
        """The plugin's state in the one vocabulary of ``runner.STATES``, without starting it."""
        if self.is_disabled(name):
            return "disabled"
        client = self._clients.get(name)
        if client is not None:
            return client.state
        plugin = self.discovery.plugins.get(name)
        return "failed" if plugin is None or plugin.metadata_error else "stopped"

    def plugin_file(self, name: str) -> PluginFile:
        """The discovered file of plugin ``name``; raises ``SafeMode``, ``Ambiguous`` or ``NotInstalled``."""
        from app.refusals import Ambiguous, NotInstalled, SafeMode

        if self.settings.no_plugins:
            raise SafeMode(name)
        found = self.discovery.plugins.get(name)
        if found is not None:
            return found
        conflict = self.discovery.conflicts.get(name)
        if conflict:
            raise Ambiguous(name, [f.path for f in conflict])
        raise NotInstalled(name, self.names())

    # -- permissions ---------------------------------------------------------------------

    def access(self, plugin: PluginFile, code: bytes | None = None, meta: Metadata | None = None) -> Access:
        """The profile and grant that apply to ``plugin``'s ``code`` (default: its file as it is now).

        ``meta`` is the metadata block of that code; a shipped plugin is granted what it requests.
        """
        digest = hashlib.sha256(code).hexdigest() if code is not None else file_sha256(plugin.path)
        user = self.grants.load().get(plugin.name)
        if user is not None and user.sha256 == digest:
            return Access("network" if user.network else "untrusted", user)
        lapsed = Lapsed(user, digest) if user is not None else None
        pinned = shipped_hashes(plugin.path.parent).get(plugin.path.name) if plugin.source == "shipped" else None
        if pinned is not None:
            meta = meta or plugin.metadata
            shipped = Grant(plugin.name, pinned, meta.network, meta.env, source="shipped")
            if pinned == digest:
                return Access("network" if meta.network else "untrusted", shipped, lapsed)
            lapsed = lapsed or Lapsed(shipped, digest)
        return Access("untrusted", None, lapsed)

    def granted(self, plugin: PluginFile) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """What ``plugin`` may use now, or was last granted: the base that a grant adds to.

        Its effective grant (the user's, or the one it ships with), joined with a user grant
        for an earlier version of the file: adding an endpoint never takes away one that
        works, be it the user's or the shipped plugin's own.
        """
        effective = self.access(plugin).grant
        stored = self.grants.load().get(plugin.name)
        network = [*(effective.network if effective else ()), *(stored.network if stored else ())]
        env = [*(effective.env if effective else ()), *(stored.env if stored else ())]
        return tuple(dict.fromkeys(network)), tuple(dict.fromkeys(env))

    def grant_more(self, plugin: PluginFile, network: tuple[str, ...], env: tuple[str, ...]) -> Grant:
        """Grant ``network`` and ``env`` on top of :meth:`granted`, bound to the file as it is now."""
        base_net, base_env = self.granted(plugin)
        return self.grants.grant(plugin.name, file_sha256(plugin.path), tuple(dict.fromkeys((*base_net, *network))),
                                 tuple(dict.fromkeys((*base_env, *env))))  # fmt: skip

    def config(self, name: str) -> runner.PluginConfig:
        """The runner configuration for plugin ``name`` under its current access."""
        import runner

        plugin = self.plugin_file(name)
        code, meta = self._code(plugin)
        access = self.access(plugin, code, meta)  # decided from the very bytes the child will run
        try:
            companions = companion_paths(plugin.path, meta.files, self.paths)
        except CompanionError as exc:
            raise runner.PluginLoadError(name, str(exc)) from None
        scratch = self.paths.scratch / name
        env = {key: self.settings.environ[key] for key in HOST_ENV_PASSTHROUGH if key in self.settings.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update(HOME=str(scratch), TMPDIR=str(scratch))
        read = [*_SYSTEM_READ, *_python_paths(), str(runner_root() / "llm_utils.py"), str(runner_root() / "runner"), *companions]
        if access.profile == "network":
            env.update({k: v for k, v in self.settings.environ.items() if k in _NETWORK_ENV})
            read += [*_NETWORK_READ, *(v for k, v in env.items() if k.startswith("SSL_CERT"))]
        env.update(self.keys.resolve(access.env, self.settings.environ))
        try:
            policy = self._policy(name, access, read, scratch)
        except runner.EndpointError as exc:  # a grant stored by an older sandchat, or edited by hand
            raise runner.PluginStartError(
                name, f"has a network grant the host cannot match: {exc}; run: sandchat plugins revoke {name}"
            ) from None
        return runner.PluginConfig(
            name=name, path=plugin.path, scratch_dir=scratch, env=env, sandbox=policy,
            deadlines=self._deadlines(name), log_path=self.paths.plugin_logs / f"{name}.log", source=code,
            max_reply=self._max_reply(name),
        )  # fmt: skip

    def _policy(self, name: str, access: Access, read: list[str], scratch: Path) -> Any:
        import runner

        return runner.SandboxPolicy(
            profile=access.profile,
            read_paths=tuple(dict.fromkeys(read)),
            write_paths=(str(scratch), "/dev/null"),
            endpoints=access.grant.network if access.profile == "network" and access.grant else (),
            allow_unsandboxed=self.settings.allow_unsandboxed,
            proxies=self._proxies(name) if access.profile == "network" else runner.Proxies(),
        )

    def _proxies(self, name: str) -> Any:
        """The user's HTTP(S)_PROXY settings, which the host honours for the plugin's connections."""
        import runner

        try:
            return runner.proxies_from(self.settings.environ)
        except runner.EndpointError as exc:
            raise runner.PluginStartError(name, f"cannot use the proxy setting: {exc}") from None

    def _max_reply(self, name: str) -> int:
        """``max_reply`` (characters) from ``[plugins.NAME]`` in the settings file, or the runner's default."""
        import runner
        from app.refusals import BadSetting

        value = self.settings.plugin_options.get(name, {}).get("max_reply", runner.DEFAULT_MAX_REPLY)
        if type(value) is not int or value < 1:
            raise BadSetting(name, f"has a bad max_reply in the settings file: {value!r} (a positive number of characters)")
        return value

    def _code(self, plugin: PluginFile) -> tuple[bytes, Metadata]:
        """Read the plugin's code once, for one start, with the metadata block it carries."""
        import runner

        try:
            with open(plugin.path, "rb") as f:
                code = f.read(runner.MAX_SOURCE + 1)
        except OSError as exc:
            raise runner.PluginStartError(plugin.name, f"cannot read {plugin.path}: {exc.strerror}") from None
        if len(code) > runner.MAX_SOURCE:
            raise runner.PluginLoadError(plugin.name, f"is larger than {runner.MAX_SOURCE // 2**20} MiB")
        try:
            return code, metadata_of(code)
        except MetadataError as exc:
            raise runner.PluginLoadError(plugin.name, f"has a bad metadata block: {exc}") from None

    def _deadlines(self, name: str) -> runner.Deadlines:
        """The manager's deadlines with the ``[plugins.NAME]`` overrides of the settings file."""
        import runner

        options = self.settings.plugin_options.get(name, {})
        fields = {f.name for f in dataclasses.fields(runner.Deadlines)}
        overrides = {key: value for key, value in options.items() if key in fields}
        if self.timeout is not None:
            overrides.update(total=self.timeout, first_chunk=min(overrides.get("first_chunk", self.deadlines.first_chunk), self.timeout))
            overrides["idle"] = min(overrides.get("idle", self.deadlines.idle), self.timeout)
        try:
            return dataclasses.replace(self.deadlines, **overrides)
        except (TypeError, ValueError) as exc:
            from app.refusals import BadSetting

            raise BadSetting(name, f"has a bad deadline in the settings file: {exc}") from None

    # -- clients -------------------------------------------------------------------------

    def client(self, name: str) -> runner.Plugin:
        """The ``LLMClient`` for plugin ``name``; its process starts on first use."""
        import runner
        from app.refusals import SafeMode, ShuttingDown, SwitchedOff, TurnedOff

        if self._closed:
            raise ShuttingDown(name)
        if self.settings.no_plugins:
            raise SafeMode(name)
        if name in self.settings.disabled:
            raise TurnedOff(name)
        if name in self.switches.disabled():
            raise SwitchedOff(name)
        known = self.discovery.plugins.get(name)
        if known is not None and name in self._clients and file_stamp(known.path) != known.stamp:
            self.refresh()  # its file changed since we last looked: restart it from the new file
        with self._lock:
            if self._closed:  # looked at again under the lock that close() takes: no handle outlives it
                raise ShuttingDown(name)
            existing = self._clients.get(name)
            if existing is not None:
                return existing
            if not self._hardened:
                runner.harden_host()
                self._hardened = True
            # Each start and restart decides again, from the file as it is then.
            client = self._clients[name] = runner.Plugin(lambda: self.config(name), policy=self.restart_policy, on_event=self.events.record)
            return client

    def forget(self, name: str) -> None:
        """Stop plugin ``name`` and drop its handle: the next use rebuilds its configuration."""
        with self._lock:
            client = self._clients.pop(name, None)
        if client is not None:
            client.close(f"its file changed or was removed; get a new handle: manager.client({name!r})")

    def running(self) -> dict[str, runner.Plugin]:
        return dict(self._clients)

    def check_idle(self) -> dict[str, bool]:
        """Ping every running, idle plugin (a liveness check); busy ones are left alone."""
        results = {name: client.check_alive() for name, client in list(self._clients.items())}
        return {name: ok for name, ok in results.items() if ok is not None}

    def close(self) -> None:
        """Stop every plugin process for good; safe to call twice, and from any thread.

        Every handle, obtained before or during the close, refuses calls afterwards
        (``PluginUnavailable``, reason ``"closed"``), and ``client()`` refuses new ones.
        """
        with self._lock:
            self._closed = True
            clients = list(self._clients.values())
        self._stopped.set()
        for client in clients:
            client.close()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(5.0)  # it wakes at once from its wait; a refresh in flight is bounded by the disk


def runner_root() -> Path:
    """The folder holding ``llm_utils.py`` and ``runner/`` (the child needs both)."""
    import runner

    return Path(runner.__file__).resolve().parent.parent


def _python_paths() -> list[str]:
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()]
    return [p for p in dict.fromkeys(paths) if p]
