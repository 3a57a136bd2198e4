"""Tiny distribution builders for the dependency tests: wheels and sdists made from dicts of files.

Nothing here runs the packages it builds. A wheel is a zip with ``NAME-VERSION.dist-info``
(METADATA, WHEEL, RECORD); an sdist is a tar.gz whose in-tree build backend
(``pyproject.toml`` with ``backend-path = ["."]`` and no build requirements, so a build
needs no index) writes a marker file as soon as any build hook runs, then builds the
same wheel. The marker is how the tests tell whether installing ran package code.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["build_sdist", "build_wheel", "module_files"]


def _dist_name(name: str) -> str:
    return name.replace("-", "_").replace(".", "_")


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def _metadata(name: str, version: str, requires: Iterable[str]) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {req}" for req in requires]
    return "\n".join(lines) + "\n"


def wheel_bytes(name: str, version: str, files: Mapping[str, str | bytes], requires: Iterable[str] = ()) -> bytes:
    """The bytes of a pure-Python ``py3-none-any`` wheel holding ``files`` (paths relative to its root)."""
    info = f"{_dist_name(name)}-{version}.dist-info"
    members = {path: data.encode() if isinstance(data, str) else data for path, data in files.items()}
    members[f"{info}/METADATA"] = _metadata(name, version, requires).encode()
    members[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: tests.deps.builders\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = [_record_line(path, data) for path, data in members.items()] + [f"{info}/RECORD,,"]
    members[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in members.items():
            archive.writestr(zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


def build_wheel(dest: Path, name: str, version: str, files: Mapping[str, str | bytes], requires: Iterable[str] = ()) -> Path:
    """Write ``NAME-VERSION-py3-none-any.whl`` into ``dest``; return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{_dist_name(name)}-{version}-py3-none-any.whl"
    path.write_bytes(wheel_bytes(name, version, files, requires))
    return path


def module_files(module: str, version: str, extra: str = "") -> dict[str, str]:
    """A one-module package ``module`` whose ``__version__`` is ``version``."""
    return {f"{module}/__init__.py": f"__version__ = {version!r}\n{extra}"}


_BACKEND = '''\
"""In-tree build backend of a test sdist: any hook it runs first writes the marker."""
import base64, hashlib, io, os, zipfile

with open({marker!r}, "a") as f:
    f.write("built\\n")

NAME, VERSION, FILES = {name!r}, {version!r}, {files!r}


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info = NAME.replace("-", "_") + "-" + VERSION + ".dist-info"
    members = {{path: data.encode() for path, data in FILES.items()}}
    members[info + "/METADATA"] = ("Metadata-Version: 2.1\\nName: " + NAME + "\\nVersion: " + VERSION + "\\n").encode()
    members[info + "/WHEEL"] = b"Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    record = []
    for path, data in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(path + ",sha256=" + digest + "," + str(len(data)))
    members[info + "/RECORD"] = ("\\n".join(record + [info + "/RECORD,,"]) + "\\n").encode()
    filename = NAME.replace("-", "_") + "-" + VERSION + "-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as archive:
        for path, data in members.items():
            archive.writestr(path, data)
    return filename
'''


def build_sdist(dest: Path, name: str, version: str, files: Mapping[str, str], marker: Path) -> Path:
    """Write ``NAME-VERSION.tar.gz``, whose build writes a line to ``marker`` before anything else."""
    dest.mkdir(parents=True, exist_ok=True)
    root = f"{_dist_name(name)}-{version}"
    members = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        "backend.py": _BACKEND.format(marker=str(marker), name=name, version=version, files=dict(files)),
        "PKG-INFO": _metadata(name, version, ()),
        **files,
    }
    path = dest / f"{root}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for member, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{member}")
            info.size, info.mtime, info.mode = len(data), 1577836800, 0o644
            archive.addfile(info, io.BytesIO(data))
    return path
