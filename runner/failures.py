"""Failures in the runner's words: one table for foreign exceptions, one for the child's error maps.

Whatever goes wrong on a live connection first arrives as a foreign exception: the OS's
(OSError: a broken pipe, a write to a dead child), the channel's and the reader's own
signals (Stalled, Shut, TimedOut, Closed) and the protocol's (ProtocolViolation,
WrongReply). A :class:`~runner.connection.Connection` catches exactly :data:`CAUGHT` at
one boundary, the except clause of each of its public methods, and raises what
:func:`translate` returns: the handler :data:`FOREIGN` names for the exception's class
(the most specific first, as httpx's ``map_httpcore_exceptions`` does). A handler ends
the process when the stream is in doubt, and words the error for the :class:`Step` the
connection was at; during the handshake (phase ``"start"``) it returns the start error.

An error the child reports itself (an error map in a response) is not an exception of
ours: :func:`remote_error` reads its ``kind`` in :data:`REMOTE`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from runner.channel import Shut, Stalled
from runner.errors import (
    PluginCancelled,
    PluginCrashed,
    PluginError,
    PluginProtocolError,
    PluginRaised,
    PluginResultError,
    PluginStartError,
    PluginStartTimeout,
    PluginTimeout,
    PluginUnavailable,
    stderr_suffix,
)  # fmt: skip
from runner.handshake import start_failure
from runner.process import describe_exit
from runner.protocol import ProtocolViolation, WrongReply
from runner.reader import Closed, TimedOut

if TYPE_CHECKING:
    from runner.connection import Connection

__all__ = ["CAUGHT", "FOREIGN", "REMOTE", "Step", "remote_error", "translate"]


class Step(NamedTuple):
    """Where a connection was when something failed: the words and the deadline of its error."""

    doing: str  # the request in flight ("start" during the handshake)
    phase: str  # the deadline that applied: "start", "count_tokens", "first_chunk", "cancel", ...
    seconds: float  # that deadline's length
    deadline: float  # when it runs out (time.monotonic()); inf before the request is sent


Handler = Callable[["Connection", BaseException, Step], PluginError]


def translate(conn: Connection, exc: BaseException, step: Step) -> PluginError:
    """The runner's error for foreign exception ``exc``, met by ``conn`` at ``step``."""
    for cls in type(exc).__mro__:
        handler = FOREIGN.get(cls)
        if handler is not None:
            return handler(conn, exc, step)
    raise TypeError(f"no translation for {type(exc).__name__}") from exc  # only CAUGHT reaches here


def _timed_out(conn: Connection, exc: BaseException, step: Step) -> PluginError:
    conn.kill()
    if step.phase == "start":
        return _start_timeout(conn, step)
    if conn.cancel_hurried(step.deadline):
        grace = conn.config.deadlines.cancel_grace
        return PluginCancelled(conn.name, f"ignored a cancel for {grace:g}s and was stopped")
    what = "ending a cancelled call" if step.phase == "cancel" else f"the {step.phase.replace('_', ' ')} deadline"
    return PluginTimeout(
        conn.name, f"timed out after {step.seconds:g}s ({what})", phase=step.phase, seconds=step.seconds, stderr_tail=conn.stderr_tail()
    )


def _stalled(conn: Connection, exc: BaseException, step: Step) -> PluginError:
    conn.kill(stopped=False)
    if step.phase == "start":
        return _start_timeout(conn, step)
    return PluginTimeout(conn.name, f"stopped reading its input during {step.doing}", phase="write")


def _start_timeout(conn: Connection, step: Step) -> PluginError:
    return PluginStartTimeout(conn.name, f"sent no hello within {step.seconds:g}s", seconds=step.seconds, stderr_tail=conn.stderr_tail())


def _shut(conn: Connection, exc: BaseException, step: Step) -> PluginError:
    return PluginUnavailable(conn.name, str(exc) or f"was stopped during {step.doing}", reason="stopped")


def _crashed(conn: Connection, exc: BaseException, step: Step) -> PluginError:
    """Its output ended or a write failed: it died, unless the host is stopping it."""
    if conn.stopping:
        return PluginUnavailable(conn.name, f"was stopped during {step.doing}", reason="stopped")
    exit_code, sig, over_memory = conn.reap()
    tail = conn.stderr_tail()
    if step.phase == "start":
        return start_failure(conn.name, exit_code, sig, tail, reported=conn.report is not None)
    how = describe_exit(exit_code, sig)
    if over_memory:
        how = f"was killed by the kernel for going over its memory limit ({conn.config.sandbox.limits.memory // 2**20} MiB)"
    return PluginCrashed(conn.name, f"{how} during {step.doing}{stderr_suffix(tail)}", exit_code=exit_code, signal=sig, stderr_tail=tail)


def _broke(conn: Connection, exc: BaseException, step: Step) -> PluginError:
    conn.kill()
    if step.phase == "start":
        return PluginStartError(conn.name, f"sent a bad hello: broke the protocol: {exc}", stderr_tail=conn.stderr_tail())
    return PluginProtocolError(conn.name, f"broke the protocol: {exc}", stderr_tail=conn.stderr_tail())


def _wrong(conn: Connection, exc: BaseException, step: Step) -> PluginError:
    conn.kill()
    return PluginProtocolError(conn.name, str(exc))


#: Foreign exceptions, and the handler that turns each into the runner's error.
FOREIGN: dict[type[BaseException], Handler] = {
    TimedOut: _timed_out,  # a deadline passed (or a cancel's grace)
    Stalled: _stalled,  # the child's input stayed full: it stopped reading
    Shut: _shut,  # the host closed the channel first: a stop, never a failure
    Closed: _crashed,  # the child's output ended
    OSError: _crashed,  # a write failed: BrokenPipeError and its like
    WrongReply: _wrong,  # well-formed, but not the answer expected
    ProtocolViolation: _broke,  # bytes or a shape the protocol refuses
}

#: What a Connection catches at its boundary: the classes of the table.
CAUGHT: tuple[type[BaseException], ...] = tuple(FOREIGN)


# -- error maps: what the child says went wrong ------------------------------------------

#: An error map's ``kind``, and the error it becomes; any other kind is the plugin's own exception.
REMOTE: dict[str, Callable[[str, str, str], PluginError]] = {
    "contract": lambda name, type_, text: PluginResultError(name, text),
    "cancelled": lambda name, type_, text: PluginCancelled(name, "reply was cancelled"),
    "request": lambda name, type_, text: PluginProtocolError(name, f"rejected the request: {type_}: {text}"),
    "busy": lambda name, type_, text: PluginProtocolError(name, f"rejected the request: {type_}: {text}"),
}


def remote_error(conn: Connection, error: dict[str, str]) -> PluginError:
    """The error for an error map the child answered with (checked for shape by the protocol)."""
    kind, type_, text = error.get("kind", "plugin"), error["type"], error["message"]
    made = REMOTE.get(kind)
    if made is not None:
        return made(conn.name, type_, text)
    return PluginRaised(
        conn.name, f"raised {type_}: {text}" if text else f"raised {type_}", remote_type=type_,
        remote_traceback=error.get("traceback", ""), refused=conn.refused_during_call(),
    )  # fmt: skip
