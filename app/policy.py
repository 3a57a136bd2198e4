"""Launch policy: what one start of a plugin may read, write, reach and see, as a ``runner.PluginConfig``.

:func:`launch_config` is the one place that decides it, from the plugin file's bytes as
read for this start, the access they are granted (``app.access``) and the settings:

* **Read**: the system's libraries and the Python running sandchat (:data:`SYSTEM_READ`,
  the interpreter's prefixes and site-packages), the child's runtime (``llm_utils.py``
  and ``runner/``), and the companion files its metadata declares (``app.companions``).
  A plugin that declares ``dependencies`` reads, instead of sandchat's environment, the
  interpreter's own tree, sandchat's msgpack and its own environment (``app.envs``), and
  imports from that environment and the standard library only.
  The ``network`` profile adds certificates and service names (:data:`NETWORK_READ`).
* **Write**: its own scratch folder (its ``HOME`` and ``TMPDIR``) and ``/dev/null``.
* **Reach**: nothing in the ``untrusted`` profile; in ``network``, exactly the granted
  endpoints, through the host (and the user's proxy, if set).
* **Environment**: :data:`~app.settings.HOST_ENV_PASSTHROUGH`, the certificate variables
  for ``network`` (:data:`NETWORK_ENV`), and the granted variables' values (environment
  first, then the keys file). Nothing else of the user's environment.
* **Deadlines** and ``max_reply``: the manager's deadlines, overridden by the settings
  file's ``[plugins.NAME]`` table, capped by the CLI's ``--timeout``.

Imported by the manager when a plugin starts, never by commands that start none.
"""

from __future__ import annotations

import dataclasses
import site
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import runner
from app.access import Access, access_of
from app.companions import CompanionError, companion_paths
from app.discovery import Metadata, MetadataError, PluginFile, metadata_of
from app.grants import GrantStore
from app.keys import KeyStore
from app.refusals import BadSetting
from app.settings import HOST_ENV_PASSTHROUGH, Settings

if TYPE_CHECKING:
    from app.envs import ChildPaths, EnvStore

__all__ = [
    "NETWORK_ENV", "NETWORK_READ", "SYSTEM_READ", "MissingDependencies", "deadlines_for", "launch_config", "read_code", "runner_root",
]  # fmt: skip

SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/etc/ld.so.cache", "/etc/localtime", "/dev/urandom")
# Certificates, and the service and protocol names some clients look up. Not the resolver's
# files (resolv.conf, hosts, nsswitch.conf, gai.conf): the host resolves every name.
NETWORK_READ = ("/etc/ssl", "/etc/ca-certificates", "/etc/pki", "/etc/services", "/etc/protocols")
# Not the proxy variables: the host connects through the user's proxy (runner.egress), and a
# plugin that saw them would try to reach the proxy itself, which is not granted.
NETWORK_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")


def launch_config(
    plugin_file: PluginFile,
    settings: Settings,
    grants: GrantStore,
    keys: KeyStore,
    deadlines: runner.Deadlines,
    timeout: float | None = None,
    envs: Callable[[], EnvStore] | None = None,
) -> runner.PluginConfig:
    """The runner configuration for one start of ``plugin_file``, decided from the file as it is now.

    ``envs``: gives the store of the environments of plugins that declare dependencies (the data
    directory's ``envs/`` when not given); called only for those, since ``app.envs`` imports
    packaging, which costs a command ~50 ms.
    """
    name = plugin_file.name
    code, meta = read_code(plugin_file)
    access = access_of(plugin_file, grants, code, meta)  # decided from the very bytes the child will run
    isolated = _environment(name, meta, envs, settings) if meta.dependencies or meta.requires_python else None
    try:
        companions = companion_paths(plugin_file.path, meta.files, settings.paths)
    except CompanionError as exc:
        raise runner.PluginLoadError(name, str(exc)) from None
    scratch = settings.paths.scratch / name
    env = {key: settings.environ[key] for key in HOST_ENV_PASSTHROUGH if key in settings.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(HOME=str(scratch), TMPDIR=str(scratch))
    python = list(isolated.read_paths) if isolated is not None else _python_paths()
    read = [*SYSTEM_READ, *python, str(runner_root() / "llm_utils.py"), str(runner_root() / "runner"), *companions]
    if access.profile == "network":
        env.update({k: v for k, v in settings.environ.items() if k in NETWORK_ENV})
        read += [*NETWORK_READ, *(v for k, v in env.items() if k.startswith("SSL_CERT"))]
    env.update(keys.resolve(access.env, settings.environ))
    try:
        sandbox = _sandbox(name, access, read, scratch, settings)
    except runner.EndpointError as exc:  # a grant stored by an older sandchat, or edited by hand
        raise runner.PluginStartError(
            name, f"has a network grant the host cannot match: {exc}; run: sandchat plugins revoke {name}"
        ) from None
    options = settings.plugin_options.get(name, {})
    return runner.PluginConfig(
        name=name, path=plugin_file.path, scratch_dir=scratch, env=env, sandbox=sandbox,
        deadlines=deadlines_for(name, deadlines, options, timeout), log_path=settings.paths.plugin_logs / f"{name}.log",
        source=code, max_reply=_max_reply(name, options),
        env_paths=isolated.env_paths if isolated else (), runner_lib_dirs=isolated.host_dirs if isolated else (),
    )  # fmt: skip


class MissingDependencies(runner.PluginLoadError):
    """Raised when a plugin's declared dependencies (or its requires-python) are not satisfied here."""

    def __init__(self, plugin: str, message: str, missing: tuple[str, ...], command: str | None) -> None:
        self.missing = missing  # the declared requirements not installed, as declared
        self.command = command  # what installs them; None when no install can help (requires-python)
        super().__init__(plugin, message)


def _environment(name: str, meta: Metadata, envs: Callable[[], EnvStore] | None, settings: Settings) -> ChildPaths | None:
    """The child's paths for a plugin that declares dependencies; raises MissingDependencies.

    Checked at every start, by one manifest read: installing with ``plugins deps`` changes no
    plugin file, so the failure must not outlive the cause (the runner latches load errors by
    the code's hash; this one is raised before any code is read by the child, and again at
    each call until it is fixed).
    """
    from app.envs import EnvStore, child_paths

    store = envs() if envs is not None else EnvStore(settings.paths.envs)
    status = store.status(meta.declared)
    reason = status.reason(name)
    if reason is not None:
        command = None if status.python else f"sandchat plugins deps {name}"
        raise MissingDependencies(name, reason, status.missing, command)
    if status.env is None:
        return None  # requires-python alone: nothing to install, sandchat's path as before
    try:
        return child_paths(status.env)
    except ValueError as exc:  # DependencyError: sandchat's own msgpack is not where a child can find it
        raise runner.PluginStartError(name, f"cannot use its environment: {exc}") from None


def read_code(plugin_file: PluginFile) -> tuple[bytes, Metadata]:
    """Read the plugin's code once, for one start, with the metadata block it carries."""
    try:
        with open(plugin_file.path, "rb") as f:
            code = f.read(runner.MAX_SOURCE + 1)
    except OSError as exc:
        raise runner.PluginStartError(plugin_file.name, f"cannot read {plugin_file.path}: {exc.strerror}") from None
    if len(code) > runner.MAX_SOURCE:
        raise runner.PluginLoadError(plugin_file.name, f"is larger than {runner.MAX_SOURCE // 2**20} MiB")
    try:
        return code, metadata_of(code)
    except MetadataError as exc:
        raise runner.PluginLoadError(plugin_file.name, f"has a bad metadata block: {exc}") from None


def deadlines_for(name: str, base: runner.Deadlines, options: Mapping[str, Any], timeout: float | None) -> runner.Deadlines:
    """``base`` with the ``[plugins.NAME]`` overrides of the settings file, every generation deadline capped by ``timeout``."""
    fields = {f.name for f in dataclasses.fields(runner.Deadlines)}
    overrides = {key: value for key, value in options.items() if key in fields}
    if timeout is not None:
        overrides.update(total=timeout, first_chunk=min(overrides.get("first_chunk", base.first_chunk), timeout))
        overrides["idle"] = min(overrides.get("idle", base.idle), timeout)
    try:
        return dataclasses.replace(base, **overrides)
    except (TypeError, ValueError) as exc:
        raise BadSetting(name, f"has a bad deadline in the settings file: {exc}") from None


def _max_reply(name: str, options: Mapping[str, Any]) -> int:
    """``max_reply`` (characters) from ``[plugins.NAME]`` in the settings file, or the runner's default."""
    value = options.get("max_reply", runner.DEFAULT_MAX_REPLY)
    if type(value) is not int or value < 1:
        raise BadSetting(name, f"has a bad max_reply in the settings file: {value!r} (a positive number of characters)")
    return value


def _sandbox(name: str, access: Access, read: list[str], scratch: Path, settings: Settings) -> runner.SandboxPolicy:
    network = access.profile == "network"
    return runner.SandboxPolicy(
        profile=access.profile,
        read_paths=tuple(dict.fromkeys(read)),
        write_paths=(str(scratch), "/dev/null"),
        endpoints=access.grant.network if network and access.grant else (),
        allow_unsandboxed=settings.allow_unsandboxed,
        proxies=_proxies(name, settings) if network else runner.Proxies(),
    )


def _proxies(name: str, settings: Settings) -> runner.Proxies:
    """The user's HTTP(S)_PROXY settings, which the host honours for the plugin's connections."""
    try:
        return runner.proxies_from(settings.environ)
    except runner.EndpointError as exc:
        raise runner.PluginStartError(name, f"cannot use the proxy setting: {exc}") from None


def runner_root() -> Path:
    """The folder holding ``llm_utils.py`` and ``runner/`` (the child needs both)."""
    return Path(runner.__file__).resolve().parent.parent


def _python_paths() -> list[str]:
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()]
    return [p for p in dict.fromkeys(paths) if p]
