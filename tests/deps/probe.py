"""A stand-in for the plugin child of a plugin with its own environment, run as ``python -I -S probe.py JSON``.

It does what docs/dependencies.md asks runner/child/entry.py to do, in the same order:
locate msgpack and llm_utils (nothing runs), apply the real sandbox (Landlock with the read
rules the host would give), load them, import the runner's server as the child does, then
``runner/child/path.isolate``. Then, as plugin code would, it tries imports and file reads and
prints what happened as JSON: ``{"imports": {name: version or error}, "reads": {...}, ...}``.
Standard library only, like the child before its sandbox.
"""

import builtins
import importlib
import importlib.util
import json
import os
import sys
import types

INTERPRETER_PATH = tuple(sys.path)  # as python -I -S built it, before anything is added


def _childpath(root: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("sandchat_childpath", os.path.join(root, "runner", "child", "path.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _outcome(action) -> object:
    try:
        return action()
    except BaseException as exc:  # what a plugin would see
        return f"{type(exc).__name__}"


def main() -> int:
    args = json.loads(sys.argv[1])
    root = args["root"]
    sys.path.insert(0, root)
    childpath = _childpath(root)
    found = childpath.locate(childpath.HOST_MODULES, args["host_dirs"])
    found.update(childpath.locate(["llm_utils"], [root]))
    package = types.ModuleType("runner")
    package.__path__ = [os.path.join(root, "runner")]
    sys.modules["runner"] = package
    sandbox = importlib.import_module("runner.sandbox")
    report = sandbox.apply("untrusted", read_paths=args["read"], write_paths=["/dev/null"], limits={})
    childpath.load(found)
    protocol = importlib.import_module("runner.protocol")
    importlib.import_module("runner.child.server")
    path = childpath.isolate(args["env_paths"], INTERPRETER_PATH)

    def version(name: str) -> str:
        module = importlib.import_module(name)
        return getattr(module, "__version__", "no __version__")

    def read(file: str) -> str:
        with open(file, "rb") as f:
            f.read(1)
        return "read"

    def from_other_env(folder: str) -> str:
        saved, sys.path[:] = sys.path[:], [folder]  # a plugin may point its path at another environment
        sys.modules.pop(args["other_module"], None)
        try:
            return version(args["other_module"])
        finally:
            sys.path[:] = saved

    frame = protocol.Encoder().request(7, "ping", [])
    result = {
        "layers": report["layers"],
        "path": path,
        "imports": {name: _outcome(lambda n=name: version(n)) for name in args["imports"]},
        "reads": {file: _outcome(lambda f=file: read(f)) for file in args["reads"]},
        "other_env": [_outcome(lambda d=d: from_other_env(d)) for d in args["other_envs"]],
        "runner_roundtrip": list(protocol.Decoder().feed(frame)),
        "runner_msgpack": protocol.msgpack.__file__,
        "llm_utils": sys.modules["llm_utils"].__file__,
        "exit_builtin": hasattr(builtins, "exit"),
    }
    os.write(1, json.dumps(result).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
