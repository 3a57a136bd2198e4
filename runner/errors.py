"""The runner's error tree: every failure of a sandboxed plugin, named, with its context.

::

    PluginError                      anything that went wrong with a plugin
    ├── PluginStartError             the process could not start or never said hello
    │   ├── PluginLoadError          the plugin file failed to load inside the child
    │   ├── PluginSandboxError       the child could not apply the sandbox it was given
    │   ├── PluginVersionError       the child speaks another protocol version
    │   └── PluginStartTimeout       no hello before the start deadline (also a PluginTimeout)
    ├── PluginCrashed                the process died during a call
    ├── PluginTimeout                a call passed one of its deadlines
    ├── PluginProtocolError          the child broke the wire protocol
    ├── PluginRaised                 plugin code raised an exception
    ├── PluginResultError            plugin code returned a value of the wrong type
    ├── PluginCancelled              the caller cancelled the call
    └── PluginUnavailable            the plugin is disabled, quarantined or ambiguous

Every error's ``str()`` is one line that starts with ``plugin 'NAME'``. Context is kept
as attributes; nothing here is pickled across the process boundary.
"""

from __future__ import annotations

from runner.cleantext import clean_text

__all__ = [
    "PluginCancelled",
    "PluginCrashed",
    "PluginError",
    "PluginLoadError",
    "PluginProtocolError",
    "PluginRaised",
    "PluginResultError",
    "PluginSandboxError",
    "PluginStartError",
    "PluginStartTimeout",
    "PluginTimeout",
    "PluginUnavailable",
    "PluginVersionError",
    "stderr_suffix",
]


class PluginError(Exception):
    """Raised when anything goes wrong with a plugin; the root of the tree."""

    def __init__(self, plugin: str, message: str, *, stderr_tail: tuple[str, ...] = ()) -> None:
        self.plugin = plugin
        # Messages carry text a plugin wrote (exception text, stderr): escape sequences
        # and control characters are removed here, where that text becomes ours.
        self.message = " ".join(clean_text(message, keep_newlines=False).split())
        self.stderr_tail = stderr_tail
        super().__init__(f"plugin {plugin!r} {self.message}")


class PluginStartError(PluginError):
    """Raised when a plugin process cannot be started or exits before its hello."""

    def __init__(
        self,
        plugin: str,
        message: str,
        *,
        exit_code: int | None = None,
        stderr_tail: tuple[str, ...] = (),
    ) -> None:
        self.exit_code = exit_code
        super().__init__(plugin, message, stderr_tail=stderr_tail)


class PluginLoadError(PluginStartError):
    """Raised when the plugin file fails to load in the child (syntax, import, no class)."""

    def __init__(
        self,
        plugin: str,
        message: str,
        *,
        remote_type: str = "",
        remote_traceback: str = "",
        stderr_tail: tuple[str, ...] = (),
    ) -> None:
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback
        super().__init__(plugin, message, stderr_tail=stderr_tail)


class PluginSandboxError(PluginStartError):
    """Raised when the child cannot apply the sandbox its profile requires."""


class PluginVersionError(PluginStartError):
    """Raised when the child's hello names a protocol version the host does not speak."""

    def __init__(self, plugin: str, message: str, *, version: object = None) -> None:
        self.version = version
        super().__init__(plugin, message)


class PluginTimeout(PluginError):
    """Raised when a call passes one of its deadlines; ``phase`` names which one."""

    def __init__(
        self,
        plugin: str,
        message: str,
        *,
        phase: str = "total",
        seconds: float = 0.0,
        stderr_tail: tuple[str, ...] = (),
    ) -> None:
        self.phase = phase
        self.seconds = seconds
        super().__init__(plugin, message, stderr_tail=stderr_tail)


class PluginStartTimeout(PluginStartError, PluginTimeout):
    """Raised when no hello arrives before the start deadline."""

    def __init__(self, plugin: str, message: str, *, seconds: float, stderr_tail: tuple[str, ...] = ()) -> None:
        # After the parent's __init__: through the MRO it reaches PluginTimeout.__init__,
        # which would reset phase and seconds to their defaults ("total", 0.0).
        PluginStartError.__init__(self, plugin, message, stderr_tail=stderr_tail)
        self.phase = "start"
        self.seconds = seconds


class PluginCrashed(PluginError):
    """Raised when the plugin process dies during a call; ``exit_code`` or ``signal`` say how."""

    def __init__(
        self,
        plugin: str,
        message: str,
        *,
        exit_code: int | None = None,
        signal: int | None = None,
        stderr_tail: tuple[str, ...] = (),
    ) -> None:
        self.exit_code = exit_code
        self.signal = signal
        super().__init__(plugin, message, stderr_tail=stderr_tail)


class PluginProtocolError(PluginError):
    """Raised when the child sends a message that breaks the protocol (shape, id, type, size)."""


class PluginRaised(PluginError):
    """Raised when plugin code raised an exception; its type and traceback text are kept.

    ``refused`` is the ``HOST:PORT`` the host refused the plugin during this call, as the
    host saw it (never read from the plugin's text), or "" when it refused none.
    """

    def __init__(self, plugin: str, message: str, *, remote_type: str, remote_traceback: str = "", refused: str = "") -> None:
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback
        self.refused = refused
        super().__init__(plugin, message)


class PluginResultError(PluginError):
    """Raised when plugin code returns a value of the wrong type (e.g. None for a str)."""


class PluginCancelled(PluginError):
    """Raised when the caller cancelled the call; ``chars`` counts the text streamed before.

    The text itself is the caller's: it received every chunk, and the runner keeps none.
    """

    def __init__(self, plugin: str, message: str = "call was cancelled", *, chars: int = 0) -> None:
        self.chars = chars
        super().__init__(plugin, message)


class PluginUnavailable(PluginError):
    """Raised when a plugin cannot be used now: disabled, quarantined, unknown or ambiguous."""

    def __init__(self, plugin: str, message: str, *, reason: str = "") -> None:
        self.reason = reason
        super().__init__(plugin, message)


def stderr_suffix(tail: tuple[str, ...]) -> str:
    """' (stderr: LAST LINE)' for an error message, or '' when the tail is empty."""
    lines = [line for line in tail if line.strip()]
    return f" (stderr: {lines[-1].strip()[:200]})" if lines else ""
