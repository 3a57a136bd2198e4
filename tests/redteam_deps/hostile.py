"""Hostile wheels, sdists and plugin bodies for tests/test_redteam_deps.py (built here, nothing downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.deps.builders import build_sdist, build_wheel, module_files

PLUGIN = """\
# /// plugin
# description = "red team probe"
# dependencies = [{deps}]
# ///
import json
import os

from llm_utils import LLMClient

ACTIONS = {actions}


def _do(kind, arg):
    try:
        if kind == "read":
            with open(arg, "rb") as f:
                f.read(1)
            return "read"
        if kind == "list":
            os.listdir(arg)
            return "listed"
        if kind == "write":
            with open(arg, "w") as f:
                f.write("poisoned = True\\n")
            return "written"
        if kind == "import":
            __import__(arg)
            return "imported"
    except BaseException as exc:
        return type(exc).__name__
    return "?"


class Probe(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return json.dumps({{k + " " + a: _do(k, a) for k, a in ACTIONS}})

    def count_tokens(self, text):
        return len(text.split())
"""


def plugin(folder: Path, name: str, deps: list[str], actions: list[tuple[str, str]] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}_plugin.py"
    path.write_text(PLUGIN.format(deps=", ".join(json.dumps(d) for d in deps), actions=repr(list(actions))))
    return path


def transitive_sdist(house: Path, elsewhere: Path, marker: Path) -> None:
    """carrier (a wheel on the index) requires ``evilsd @ file:///.../evilsd-1.0.tar.gz`` (an sdist whose build writes marker)."""
    sd = build_sdist(elsewhere, "evilsd", "1.0", module_files("evilsd", "1.0"), marker)
    build_wheel(house, "carrier", "1.0", module_files("carrier", "1.0"), requires=[f"evilsd @ {sd.as_uri()}"])


def transitive_file_wheel(house: Path, elsewhere: Path) -> None:
    """carrier2 requires ``secretw @ file:///...whl``: a user's file no plugin may name directly."""
    w = build_wheel(elsewhere, "secretw", "1.0", module_files("secretw", "1.0"))
    build_wheel(house, "carrier2", "1.0", module_files("carrier2", "1.0"), requires=[f"secretw @ {w.as_uri()}"])


RAN = "import builtins; builtins.__dict__.setdefault('__rt_ran__', []).append({name!r})\n"

SHADOWS = ("sitecustomize", "usercustomize", "llm_utils", "msgpack", "encodings", "runner", "app", "site", "codecs")


def shadowing_wheel(house: Path, marker_dir: Path) -> None:
    """shadow 1.0: top-level modules named like the host's and the stdlib's, a .pth; each, if run, leaves a trace.

    On the host a trace is a marker file; in the sandbox (no write) it is ``builtins.__rt_ran__``.
    """
    files: dict[str, str] = {}
    for name in SHADOWS:
        code = RAN.format(name=name) + f"open({str(marker_dir / name)!r}, 'w').close()\n"
        target = f"{name}/__init__.py" if name in ("encodings", "runner", "app", "msgpack") else f"{name}.py"
        files[target] = "try:\n" + "".join("    " + line + "\n" for line in code.splitlines()) + "except OSError:\n    pass\n"
    files["runner/child/__init__.py"] = files["runner/__init__.py"]
    files["shadow/__init__.py"] = "__version__ = '1.0'\n"
    files["zz-shadow.pth"] = "import builtins; " + RAN.format(name="pth").strip() + f"; open({str(marker_dir / 'pth')!r}, 'w')\n"
    build_wheel(house, "shadow", "1.0", files)


SHADOW_PLUGIN = """\
# /// plugin
# description = "reports what of its environment ran before it"
# dependencies = ["shadow"]
# ///
import builtins
import json
import sys

import llm_utils
from llm_utils import LLMClient


class Probe(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        import json as j2
        return json.dumps({"ran": getattr(builtins, "__rt_ran__", []), "llm_utils": llm_utils.__file__,
                           "json": j2.__file__, "runner": getattr(sys.modules.get("runner"), "__path__", None) and list(sys.modules["runner"].__path__)})

    def count_tokens(self, text):
        return len(text.split())
"""


def deflated(data: bytes) -> bytes:
    """The same wheel, every member compressed (tests.deps.builders stores them)."""
    import io
    import zipfile

    src, buf = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for info in src.infolist():
            fresh = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            fresh.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(fresh, src.read(info))
    return buf.getvalue()


def transitive_directory(house: Path, project: Path, marker: Path) -> None:
    """carrier3 requires ``proj @ file:///.../project`` (a user's source folder, whose build writes marker)."""
    import tarfile

    sd = build_sdist(project.parent / "sd", "proj", "1.0", module_files("proj", "1.0"), marker)
    with tarfile.open(sd) as archive:
        archive.extractall(project.parent / "sd")
    (project.parent / "sd" / "proj-1.0").rename(project)
    build_wheel(house, "carrier3", "1.0", module_files("carrier3", "1.0"), requires=[f"proj @ {project.as_uri()}"])


def extra_sdist(house: Path, elsewhere: Path, marker: Path) -> None:
    """nice 1.0 looks clean; its extra [fast] requires an sdist by file: URL."""
    sd = build_sdist(elsewhere, "fastsd", "1.0", module_files("fastsd", "1.0"), marker)
    build_wheel(house, "nice", "1.0", module_files("nice", "1.0"), requires=[f'fastsd @ {sd.as_uri()} ; extra == "fast"\nProvides-Extra: fast'])
