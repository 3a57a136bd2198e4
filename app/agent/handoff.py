"""Agent handoff: a ``prompt`` or ``tokens`` command handed to the agent's forker, so its first byte does not wait for imports.

The client side runs before anything else of sandchat is imported (``app.entry``), and
stays small: it finds the forker's socket, checks the peer is this user, and sends one
request with its standard streams attached (SCM_RIGHTS)::

    client -> forker   {type: run, identity, argv0, argv, env, cwd, umask, streams} + fds 0, 1, 2
    forker -> client   {type: running, pid} | {type: refused, why}
    client -> forker   {type: signal, signum}   (Ctrl-C, SIGTERM, SIGHUP: relayed to the worker)
    forker -> client   {type: exit, code}

Frames are ``app.agent.wire``'s. Anything short of ``running`` (no forker, another uid,
another interpreter or build, a refusal, 0.2 s without an answer) returns None and the
caller runs the command itself, having lost nothing: the worker touches neither the
streams nor the files before it says ``running``. After it, the worker is the command,
and its exit status is this process's.
"""

from __future__ import annotations

import _locale
import _signal  # type: ignore[import-not-found]  # _signal, _socket: not their Python layers (enum, selectors): ~5 ms
import _socket
import codecs
import os
import struct
import sys

from app.agent import wire
from app.agent.errors import AgentError, WireError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing: see app/__init__.py
if TYPE_CHECKING:
    from typing import Any

SOCKET_NAME = "forker.sock"
CONNECT_SECONDS = 0.2
REQUEST_SECONDS = 2.0  # the worker's bound on reading the request (a client that connects and says nothing)
MAX_REQUEST = 4 * 1024 * 1024  # argv and environment: Linux's own limit on both together is far below
RELAYED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)
EXIT_NO_STATUS = 1  # app.exits.EXIT_PLUGIN, not imported: this module runs before the rest of sandchat
_UCRED = struct.Struct("3i")
_FDS = struct.Struct("3i")  # the descriptors sent: standard input, output and error


def run(argv: list[str]) -> int | None:
    """Hand the command to the forker; its exit status, or None when the caller must run it itself."""
    path = socket_path(os.environ)
    if path is None:
        return None
    pending: list[int] = []
    saved = {sig: _signal.signal(sig, lambda signum, _frame: pending.append(signum)) for sig in RELAYED}
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        reply = _ask(sock, path, argv)
    except (AgentError, OSError):
        reply = None
    if reply is None or reply.get("type") != "running":
        sock.close()
        _restore(saved, pending)
        return None
    return _follow(sock, pending)


def _ask(sock: _socket.socket, path: str, argv: list[str]) -> dict[str, Any] | None:
    sock.settimeout(CONNECT_SECONDS)
    sock.connect(path)
    _pid, uid, _gid = _UCRED.unpack(sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, _UCRED.size))
    if uid != os.getuid():
        return None
    umask = os.umask(0o077)
    os.umask(umask)
    request = {"type": "run", "identity": identity(), "argv0": sys.argv[0], "argv": argv, "env": dict(os.environ),
               "cwd": os.getcwd(), "umask": umask, "streams": [_stream_spec(s) for s in (sys.stdin, sys.stdout, sys.stderr)]}  # fmt: skip
    frame = wire.encode(request)
    if len(frame) > MAX_REQUEST:
        return None
    sent = sock.sendmsg([frame], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _FDS.pack(0, 1, 2))])
    sock.sendall(frame[sent:])
    return wire.receive(sock)


def _stream_spec(stream: Any) -> list[Any]:
    """How the worker rebuilds one standard stream as this interpreter built it (encoding, errors, buffering)."""
    if stream is None:
        raise WireError("a standard stream is closed")
    return [stream.encoding, stream.errors, stream.line_buffering, stream.write_through]


def _follow(sock: _socket.socket, pending: list[int]) -> int:
    """Relay signals to the worker until it sends its exit status."""
    sock.settimeout(None)  # the command's own deadlines bound it; the worker's end closes the socket

    def relay(signum: int, _frame: object) -> None:
        try:
            wire.send(sock, {"type": "signal", "signum": signum})
        except AgentError:
            pass  # the worker is gone: its end is read next

    for sig in RELAYED:
        _signal.signal(sig, relay)
    for signum in pending:
        relay(signum, None)
    try:
        while True:
            try:
                frame = wire.receive(sock)
            except AgentError:
                sys.stderr.write("sandchat: the agent's worker running this command ended without an exit status; "
                                 "run it again, or with SANDCHAT_AGENT_IDLE=0 to run it without the agent\n")  # fmt: skip
                return EXIT_NO_STATUS
            code = frame.get("code")
            if frame.get("type") == "exit" and type(code) is int and 0 <= code <= 255:
                return code
    finally:
        sock.close()


def _restore(saved: dict[int, Any], pending: list[int]) -> None:
    """The handlers as they were; a signal that came while asking now has its usual effect."""
    for sig, handler in saved.items():
        _signal.signal(sig, handler)
    for signum in pending:
        _signal.raise_signal(signum)


def identity() -> dict[str, Any]:
    """What decides which code a command runs beyond sandchat's own files: a worker must match it exactly.

    UTF-8 mode is compared by its effect (the encoding ``open()`` uses), not its flag: Python turns
    it on for a C locale and then exports LC_CTYPE=C.UTF-8, so an agent started from a client
    that had no locale runs with the flag off and the same encodings.
    """
    flags = {name: getattr(sys.flags, name) for name in sys.flags.__match_args__ if name != "utf8_mode"}
    text = "utf-8" if sys.flags.utf8_mode else codecs.lookup(_locale.getencoding()).name
    return {"executable": sys.executable, "version": sys.version, "path": sys.path[1:], "flags": flags,
            "warnoptions": list(sys.warnoptions), "xoptions": sorted(map(str, sys._xoptions.items())),
            "app": os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            "encodings": [sys.getfilesystemencoding(), sys.getfilesystemencodeerrors(), text,
                          _locale.setlocale(_locale.LC_CTYPE)]}  # fmt: skip


def socket_path(environ: os._Environ[str] | dict[str, str]) -> str | None:
    """The forker's socket in the agent's directory (``app.agent.paths.choose``), or None when it is not private."""
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime and _private(runtime):
        directory = os.path.join(runtime, "sandchat")
    elif environ.get("SANDCHAT_HOME"):
        directory = os.path.join(os.path.realpath(os.path.expanduser(environ["SANDCHAT_HOME"])), "agent")
    else:
        home = environ.get("HOME") or os.path.expanduser("~")
        data = environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
        directory = os.path.join(os.path.abspath(data), "sandchat", "agent")
    return os.path.join(directory, SOCKET_NAME) if _private(directory) else None


def _private(directory: str) -> bool:
    """A directory of this user's that no one else may enter (no symlink): never send the environment elsewhere."""
    try:
        info = os.lstat(directory)
    except OSError:
        return False
    return (info.st_mode & 0o170077) == 0o040000 and info.st_uid == os.getuid()
