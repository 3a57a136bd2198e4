"""The plugin child's entry point: claim the channel, apply the sandbox, then load and serve.

Run as ``python -I -S runner/child/entry.py OPTIONS``. Until the sandbox is on, this file uses
the standard library only and imports nothing that could run third-party code: ``-S``
keeps ``site`` (and every ``.pth`` file) from running before the sandbox does.

Options (all but --root and --plugin optional, lists repeatable)::

    --root DIR  --plugin FILE  --name NAME  --profile untrusted|network|none
    --ro PATH  --rw PATH  --limit KEY=INT  --max-message BYTES  --egress FD
    --env DIR  --runner-lib DIR  --allow-unsandboxed

``--env DIR`` (a plugin with declared dependencies): the import path becomes these folders
and the standard library; ``site`` never runs, sandchat's packages leave the path, and the
runner's own msgpack is found in ``--runner-lib`` before the sandbox is on (runner/child/path.py).

``--egress FD`` (network profile): the inherited end of the host's network broker. The
child's socket layer is routed through it (runner/child/netshim.py) before ``site`` runs.

A child that cannot apply its sandbox prints one ``sandchat-sandbox-error: ...`` line to
stderr and exits with status 78 (``runner/constants.py`` SANDBOX_EXIT), before any plugin
code has run.

The plugin's code is not read from ``--plugin`` (which only names it): the host sends the
exact bytes it decided the plugin's access for, as the first frame on the channel
(runner/protocol.py ``source_frame``), and the child reads them once its sandbox is on.

Before that, and so before any plugin code or ``.pth`` file could write to the channel,
the child sends the sandbox report as its own first frame: 4-byte length, then UTF-8
lines ``KEY VALUE`` (:func:`report_frame`). The host believes no later word about the
sandbox; a hello's claims cannot replace it.

Text a plugin prints through ``sys.stdout`` reaches the log line-buffered, each line
tagged ``[stdout] `` (``STDOUT_TAG``), so stray prints can be told from logging.

The runner's modules this file loads (``runner.constants``, ``runner.sandbox``,
``runner.child.netshim``, ``runner.child.server``) are imported without running
``runner/__init__.py``, the host's public surface: :func:`_runner_module`.
"""

import importlib
import io
import os
import sys
import types


def _runner_module(name: str) -> types.ModuleType:
    """Import ``runner.<name>`` from the folder this file is in, without ``runner/__init__``."""
    if "runner" not in sys.modules:
        package = types.ModuleType("runner")
        package.__path__ = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
        sys.modules["runner"] = package
    return importlib.import_module("runner." + name)


#: The interpreter's own path under -I -S (the standard library), before main() adds to it.
_INTERPRETER_PATH = tuple(sys.path)
_constants = _runner_module("constants")
STDOUT_TAG = _constants.STDOUT_TAG.encode()
_LISTS = {"--ro": "ro", "--rw": "rw", "--limit": "limit", "--env": "env", "--runner-lib": "runner_lib"}
_FLAGS = {"--allow-unsandboxed": "allow_unsandboxed"}


def claim_channel() -> tuple:
    """Move the protocol to private fds; fd 0 becomes /dev/null and fd 1 becomes stderr.

    After this, a plugin that prints (to sys.stdout or straight to fd 1) writes into the
    captured stderr and cannot corrupt a single protocol message.
    """
    read_fd, write_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    return read_fd, write_fd


class TaggedStdout(io.RawIOBase):
    """The raw writer under ``sys.stdout``: fd 1 (now stderr), each line starting with the tag."""

    def __init__(self) -> None:
        super().__init__()
        self._line_start = True

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return 1

    def write(self, data) -> int:
        data = bytes(data)
        out = bytearray()
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            end = len(data) if end < 0 else end + 1
            if self._line_start:
                out += STDOUT_TAG
            out += data[start:end]
            self._line_start = data[end - 1 : end] == b"\n"
            start = end
        _write_all(1, out)
        return len(data)


def tag_stdout() -> None:
    """Make ``sys.stdout`` line-buffered UTF-8 over :class:`TaggedStdout`."""
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(TaggedStdout()), encoding="utf-8", errors="backslashreplace", line_buffering=True)


def parse_options(argv: list) -> dict:
    options: dict = {"profile": "untrusted", "name": "", "max_message": 0, "allow_unsandboxed": False, "egress": -1}
    options.update({key: [] for key in _LISTS.values()})
    args = iter(argv)
    for arg in args:
        key = arg[2:].replace("-", "_") if arg.startswith("--") else ""
        if arg in _FLAGS:
            options[_FLAGS[arg]] = True
        elif arg in _LISTS or key in ("root", "plugin", "name", "profile", "max_message", "egress"):
            value = next(args, None)
            if value is None:
                raise SystemExit(f"sandchat child: option {arg} needs a value")
            if arg in _LISTS:
                options[_LISTS[arg]].append(value)
            else:
                options[key] = value
        else:
            raise SystemExit(f"sandchat child: unknown option {arg!r}")
    if not options.get("root") or not options.get("plugin"):
        raise SystemExit("sandchat child: --root and --plugin are required")
    try:
        options["limits"] = {k: int(v) for k, v in (item.split("=", 1) for item in options.pop("limit"))}
        options["max_message"] = int(options["max_message"])
        options["egress"] = int(options["egress"])
    except ValueError as exc:
        raise SystemExit(f"sandchat child: bad option value ({exc})") from None
    return options


def apply_sandbox(options: dict) -> dict:
    try:
        sandbox = _runner_module("sandbox")
        return sandbox.apply(
            options["profile"],
            read_paths=options["ro"],
            write_paths=options["rw"],
            limits=options["limits"],
            allow_unsandboxed=options["allow_unsandboxed"],
        )
    except Exception as exc:  # any failure here means no sandbox: refuse to go on
        message = " ".join(str(exc).split()) or type(exc).__name__
        os.write(2, f"{_constants.SANDBOX_ERROR_MARKER} {message}\n".encode("utf-8", "replace"))
        os._exit(_constants.SANDBOX_EXIT)


def _read_exactly(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise SystemExit("sandchat child: the host closed the channel before sending the plugin's code")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_source(fd: int) -> bytes:
    """The plugin's code, as the first frame from the host: 8-byte length, then the bytes."""
    size = int.from_bytes(_read_exactly(fd, _constants.SOURCE_LENGTH_BYTES), "big")
    if size > _constants.MAX_SOURCE:
        raise SystemExit(f"sandchat child: the host sent {size} bytes of code (the limit is {_constants.MAX_SOURCE})")
    return _read_exactly(fd, size)


def report_frame(report: dict) -> bytes:
    """The sandbox report as the child's first frame: one ``KEY VALUE`` line per fact."""
    lines = [_constants.REPORT_MAGIC, f"profile {report['profile']}", f"landlock_abi {report['landlock_abi']}"]
    lines += [f"layer {layer}" for layer in report["layers"]]
    lines += [f"limit {name} {value}" for name, value in report["limits"].items()]
    lines += ["missing " + " ".join(str(item).split()) for item in report["missing"]]
    body = "\n".join(lines).encode("utf-8", "replace")
    return len(body).to_bytes(_constants.REPORT_LENGTH_BYTES, "big") + body


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def main(argv: list) -> int:
    read_fd, write_fd = claim_channel()
    tag_stdout()
    options = parse_options(argv)
    sys.path.insert(0, options["root"])  # llm_utils and the runner package live there
    own_path = _runner_module("child.path") if options["env"] else None
    if own_path is not None:  # found now, run later: finding a module runs none of its code
        found = own_path.locate(own_path.HOST_MODULES, options["runner_lib"])
        found.update(own_path.locate(["llm_utils"], [options["root"]]))
    report = apply_sandbox(options)
    _write_all(write_fd, report_frame(report))  # before any code of the plugin's could write
    options["source"] = read_source(read_fd)
    if options["egress"] >= 0:  # before site: no .pth file sees the unadapted socket module
        _runner_module("child.netshim").install(options["egress"])
    if own_path is None:
        import site

        site.main()  # only now: .pth files in site-packages run inside the sandbox
        server = _runner_module("child.server")
    else:  # the plugin's own environment and the stdlib, not sandchat's packages; no .pth file runs
        own_path.load(found)
        server = _runner_module("child.server")
        own_path.isolate(options["env"], _INTERPRETER_PATH)
    return server.serve(read_fd, write_fd, options, report)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
