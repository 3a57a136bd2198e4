"""sandchat's settings: where things live and what the user chose, read once in ``main()``.

Nothing here reads the environment on import. :func:`load` is handed the environment
mapping by the CLI's ``main()`` and returns frozen, validated objects; everything else
receives those objects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["HOST_ENV_PASSTHROUGH", "Paths", "Settings", "SettingsError", "load"]

#: Host variables every plugin receives unchanged: search path, locale, and the sampling seed (not a secret).
HOST_ENV_PASSTHROUGH = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "SANDCHAT_SEED")


class SettingsError(ValueError):
    """Raised when the settings file or an environment variable holds an invalid value."""


@dataclass(frozen=True)
class Paths:
    """The configuration and data directories, and the files sandchat keeps in them."""

    config_dir: Path
    data_dir: Path

    @classmethod
    def from_home(cls, home: str | os.PathLike[str]) -> Paths:
        """One directory for everything (``SANDCHAT_HOME``, or a test's temporary home)."""
        home = Path(home).expanduser().resolve()
        return cls(config_dir=home, data_dir=home)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Paths:
        if environ.get("SANDCHAT_HOME"):
            return cls.from_home(environ["SANDCHAT_HOME"])
        home = Path(environ.get("HOME") or Path.home())
        config = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
        data = Path(environ.get("XDG_DATA_HOME") or home / ".local" / "share")
        return cls(config_dir=config / "sandchat", data_dir=data / "sandchat")

    @property
    def user_plugins(self) -> Path:
        return self.data_dir / "plugins"

    @property
    def plugin_logs(self) -> Path:
        return self.data_dir / "logs"

    @property
    def scratch(self) -> Path:
        return self.data_dir / "scratch"

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def grants_file(self) -> Path:
        return self.config_dir / "grants.json"

    @property
    def keys_file(self) -> Path:
        return self.config_dir / "keys.json"

    @property
    def switches_file(self) -> Path:
        return self.config_dir / "disabled.json"

    @property
    def envs(self) -> Path:
        """Plugins' own dependency environments (``app.envs``)."""
        return self.data_dir / "envs"

    @property
    def health_db(self) -> Path:
        return self.data_dir / "health.db"

    @property
    def logs_db(self) -> Path:
        return self.data_dir / "logs.db"


@dataclass(frozen=True)
class Settings:
    """What the user chose, from ``config.toml`` and ``SANDCHAT_*`` variables."""

    paths: Paths
    default_plugin: str | None = None
    disabled: frozenset[str] = frozenset()
    no_plugins: bool = False
    allow_unsandboxed: bool = False
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)  # never handed to plugins whole
    plugin_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # [plugins.NAME] tables

    def __post_init__(self) -> None:
        if self.default_plugin is not None and not self.default_plugin.strip():
            raise SettingsError("default_plugin must not be empty")


def _read_settings_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    import tomllib  # only paid for when the user has a settings file

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{path}: {exc}") from None


def load(environ: Mapping[str, str], *, no_plugins: bool = False, home: str | os.PathLike[str] | None = None) -> Settings:
    """Build the settings from the process environment and the settings file.

    ``home`` stands for ``SANDCHAT_HOME`` (and wins over it).
    """
    paths = Paths.from_home(home) if home is not None else Paths.from_environ(environ)
    data = _read_settings_file(paths.settings_file)
    disabled = set(data.get("disabled", []))
    disabled.update(name.strip() for name in environ.get("SANDCHAT_DISABLE_PLUGINS", "").split(",") if name.strip())
    plugins = data.get("plugins", {})
    if not isinstance(plugins, dict) or not all(isinstance(v, dict) for v in plugins.values()):
        raise SettingsError(f"{paths.settings_file}: [plugins.NAME] entries must be tables")
    return Settings(
        paths=paths,
        default_plugin=environ.get("SANDCHAT_DEFAULT_PLUGIN") or data.get("default_plugin"),
        disabled=frozenset(disabled),
        no_plugins=no_plugins,
        allow_unsandboxed=environ.get("SANDCHAT_ALLOW_UNSANDBOXED") == "1" or bool(data.get("allow_unsandboxed")),
        environ=dict(environ),
        plugin_options=plugins,
    )
