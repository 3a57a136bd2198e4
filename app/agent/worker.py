"""Agent worker: a fork of the forker that checks one handed-over command, then becomes it.

Before it says ``running`` it has read only the request and touched nothing of the
client's (streams, files): a refusal costs the client 0.2 s at most and it runs the command
itself. After it, the worker takes the client's working directory, umask, environment,
argv and standard streams (rebuilt as the client's interpreter built them), runs
``app.cli.main`` as ``sandchat`` would, and sends its exit status. The client's signals
arrive as frames and are raised here; the client's end (it was killed, its terminal
closed) is a SIGHUP, as a terminal's hang-up would be.
"""

from __future__ import annotations

import array
import io
import os
import resource
import signal
import socket
import sys
import threading
import time
from typing import Any

from app.agent import handoff, wire
from app.agent.errors import AgentError, WireError
from app.agent.peer import peer_pid
from app.argv import HANDED_OVER, command_at

_STREAMS = (("<stdin>", "r"), ("<stdout>", "w"), ("<stderr>", "w"))
_FDS = len(_STREAMS)
MAX_VARIABLES = 10_000  # Linux's limit on argv and environment together (~2 MiB) makes even this unlikely


def work(sock: socket.socket, loaded: str) -> int:
    """Serve the connection ``sock``; the exit status of this process."""
    from app.version import build

    try:
        sock.setblocking(True)
        sock.settimeout(handoff.REQUEST_SECONDS)
        request, fds = _receive(sock)
        why = _refusal(request, fds, loaded, build()) or _adopt_limits(peer_pid(sock)) or _enter(request)
        wire.send(sock, {"type": "refused", "why": why} if why else {"type": "running", "pid": os.getpid()})
    except AgentError:
        return 0
    if why:
        print(f"forker: a command ran itself: {why}", flush=True)  # still the agent's log: the client's streams come after
        return 0
    sock.settimeout(None)
    return _become(request, fds, sock)


def _receive(sock: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The request frame and the descriptors that came with its first bytes (``WireError`` on anything odd)."""
    fds = array.array("i")
    try:
        data, ancillary, flags, _ = sock.recvmsg(1 << 16, socket.CMSG_SPACE(_FDS * fds.itemsize))
    except OSError as error:
        raise WireError(f"cannot receive: {error}") from error
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if flags & socket.MSG_CTRUNC or len(fds) != _FDS:
        for fd in fds:
            os.close(fd)
        raise WireError(f"expected {_FDS} descriptors, got {len(fds)}")
    if len(data) < 4:
        raise WireError("the request is cut short")
    length = int.from_bytes(data[:4], "big")
    if length > handoff.MAX_REQUEST:
        raise WireError(f"a request of {length} bytes")
    body, deadline = data[4:], time.monotonic() + handoff.REQUEST_SECONDS
    while len(body) < length:
        # One bound for the whole request, not per read: a byte a second would hold a worker forever.
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            part = sock.recv(min(length - len(body), 1 << 16))
        except OSError as error:  # the timeout included
            raise WireError(f"cannot receive: {error}") from error
        if not part:
            raise WireError("the request is cut short")
        body += part
    return wire.decode(body[:length]), list(fds)


def _refusal(request: dict[str, Any], fds: list[int], loaded: str, now: str) -> str | None:
    """Why this worker must not run the request (the client then runs it itself), or None."""
    if request.get("type") != "run":
        return f"not a run request: {str(request.get('type'))[:40]!r}"
    if now != loaded:
        return "sandchat's code changed since the forker loaded it"
    if request.get("identity") != handoff.identity():
        return "the client runs another interpreter, module path, flags or locale"
    argv, env = request.get("argv"), request.get("env")
    if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)):
        return "argv is not a list of strings"
    at = command_at(argv)
    if at == len(argv) or argv[at] not in HANDED_OVER:
        return f"not a command the forker runs: {(argv[at] if at < len(argv) else '')[:40]!r}"  # the entry point hands over no other
    if not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) and k and "=" not in k for k, v in env.items())):
        return "the environment is not a map of names to strings"
    if len(env) > MAX_VARIABLES or any("\0" in k or "\0" in v for k, v in env.items()):
        return f"an environment of {len(env)} variables, or one with a NUL"  # no process could have it; putenv is quadratic
    if any(_is_directory(fd) for fd in fds):
        return "a standard stream is a directory"
    if not (isinstance(request.get("umask"), int) and 0 <= request["umask"] <= 0o777 and isinstance(request.get("argv0"), str)):
        return "a bad umask or argv0"
    streams = request.get("streams")
    if not (isinstance(streams, list) and len(streams) == _FDS and all(_good_stream(s) for s in streams)):
        return "bad stream settings"
    if not isinstance(request.get("cwd"), str):
        return "a bad working directory"
    shadow = _shadowed(request["argv0"], request["cwd"])
    return f"the client's first module folder holds another {shadow!r}" if shadow else None


def _enter(request: dict[str, Any]) -> str | None:
    """Move into the client's working directory (the last check: it is a change), or say why not."""
    try:
        os.chdir(request["cwd"])
    except (OSError, ValueError) as error:
        return f"cannot enter the working directory: {error}"
    return None


def _is_directory(fd: int) -> bool:
    import stat

    try:
        return stat.S_ISDIR(os.fstat(fd).st_mode)
    except OSError:
        return True  # not even a descriptor: as unusable


def _good_stream(spec: Any) -> bool:
    if not (isinstance(spec, list) and len(spec) == 4):
        return False
    encoding, errors, line_buffering, write_through = spec
    if not (isinstance(encoding, str) and isinstance(errors, str) and type(line_buffering) is bool and type(write_through) is bool):
        return False
    import codecs

    try:
        text = codecs.lookup(encoding)._is_text_encoding  # rot13, base64: codecs, but not a stream's encoding
        codecs.lookup_error(errors)
    except LookupError:
        return False
    return bool(text)


def _adopt_limits(pid: int) -> str | None:
    """Take on the client's resource limits and niceness, as it would run alone; or why that cannot be."""
    for name in sorted(n for n in dir(resource) if n.startswith("RLIMIT_")):
        which = getattr(resource, name)
        try:
            soft, hard = resource.prlimit(pid, which)
            if _above(hard, resource.getrlimit(which)[1]):
                return f"the client's {name} is above the forker's"  # a worker may lower a limit, never raise one
            resource.setrlimit(which, (soft, hard))
        except (OSError, ValueError) as error:
            return f"cannot take on the client's {name}: {error}"
    try:
        theirs, ours = os.getpriority(os.PRIO_PROCESS, pid), os.getpriority(os.PRIO_PROCESS, 0)
        if theirs < ours:
            return "the client runs at a higher priority than the forker"
        os.setpriority(os.PRIO_PROCESS, 0, theirs)
    except OSError as error:
        return f"cannot take on the client's niceness: {error}"
    return None


def _above(limit: int, than: int) -> bool:
    unlimited = resource.RLIM_INFINITY
    return than != unlimited and (limit == unlimited or limit > than)


def _shadowed(argv0: str, cwd: str) -> str | None:
    """A module this process has loaded that the client's ``sys.path[0]`` would have given it from elsewhere.

    The identity compares the rest of the module path; the first entry is the script's folder
    (the working directory for ``python -m``), which differs between client and forker by design.
    """
    first = os.path.abspath(cwd if argv0.endswith("__main__.py") else os.path.dirname(os.path.abspath(argv0)))
    try:
        entries = list(os.scandir(first))
    except OSError:
        return None
    for entry in entries:
        top, _, suffix = entry.name.partition(".")
        if not top or not (suffix in ("py", "pyc") or suffix.endswith("so") or entry.is_dir()):
            continue  # not something `import` would find
        module = sys.modules.get(top)
        if module is None:
            continue
        where = getattr(module, "__file__", None)
        if where is None or os.path.dirname(os.path.abspath(where)) not in (first, os.path.join(first, top)):
            return top
    return None


def _become(request: dict[str, Any], fds: list[int], sock: socket.socket) -> int:
    """Take on the client's process state, run the command, send its exit status."""
    for old in (sys.stdout, sys.stderr):
        try:
            old.flush()  # the forker's log lines must not land in the client's streams
        except (OSError, ValueError):
            pass
    os.umask(request["umask"])
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        if fd != target:
            os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()
    sys.argv = [request["argv0"], *request["argv"]]
    for target, ((name, mode), spec) in enumerate(zip(_STREAMS, request["streams"], strict=True)):
        stream = _stream(target, name, mode, spec)
        setattr(sys, name.strip("<>"), stream)
        setattr(sys, f"__{name.strip('<>')}__", stream)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    over = threading.Event()
    threading.Thread(target=_relay, args=(sock, over), name="worker-relay", daemon=True).start()
    code = _run(request["argv"])
    over.set()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # relayed late: the command is over
    try:
        wire.send(sock, {"type": "exit", "code": code})
    except AgentError:
        pass
    return code


def _stream(fd: int, name: str, mode: str, spec: list[Any]) -> io.TextIOWrapper:
    encoding, errors, line_buffering, write_through = spec
    raw = io.FileIO(fd, mode, closefd=False)
    raw.name = name  # as the interpreter names its own
    buffered: io.BufferedReader | io.BufferedWriter = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
    return io.TextIOWrapper(
        buffered, encoding=encoding, errors=errors, newline="\n", line_buffering=line_buffering, write_through=write_through
    )


def _relay(sock: socket.socket, over: threading.Event) -> None:
    """Raise the signals the client relays; its end is a hang-up."""
    while not over.is_set():
        try:
            frame = wire.receive(sock)
        except AgentError:
            if not over.is_set():
                os.kill(os.getpid(), signal.SIGHUP)
            return
        signum = frame.get("signum")
        if frame.get("type") == "signal" and type(signum) is int and signum in handoff.RELAYED and not over.is_set():
            os.kill(os.getpid(), signum)


def _run(argv: list[str]) -> int:
    """``sandchat ARGV`` as the interpreter would end it: its status, a SystemExit's, a traceback's 1."""
    from app.cli import main

    try:
        code: object = main(argv)
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120  # as the interpreter reports output it could not flush at exit
    return code & 0xFF
