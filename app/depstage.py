"""What pip put in a staging folder, read as data: each file's name, version, sizes, sha256 and declared requirements.

:func:`staged` turns a staging folder into the plan's :class:`Planned` items, refusing what a
plan must not hold: a file that is not a wheel (an sdist too, with ``allow_build``), a wheel
that unpacks to more than :data:`MAX_UNPACKED_BYTES` in all or holds more than
:data:`MAX_WHEEL_ENTRIES` files, and a wheel whose ``Requires-Dist`` has a direct reference
(``name @ URL``: PyPI refuses to host such wheels, and pip would fetch or read the URL).
Nothing here runs pip or a package's code: a wheel is a zip, its METADATA an email header.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, parse_sdist_filename, parse_wheel_filename

from app.deps import DependencyError, canonicalize_name

__all__ = [
    "MAX_UNPACKED_BYTES",
    "MAX_WHEEL_ENTRIES",
    "Planned",
    "InstallError",
    "WheelInfo",
    "asked_as",
    "direct_references",
    "probed",
    "read_wheel",
    "staged",
]

# What one plugin's environment may take on disk once unpacked: room for torch with its CUDA
# wheels (about 7 GiB), not for a zip bomb filling the disk. The plan shows the real figure first.
MAX_UNPACKED_BYTES = 16 << 30
MAX_WHEEL_ENTRIES = 100_000  # torch, the largest wheel we know of, has about 15,000
_MAX_METADATA_BYTES = 4 << 20  # a METADATA file is headers plus a README: the largest on PyPI are under 1 MiB
PINS = "pins.txt"  # sandchat's own file in the staging folder (install's hash-pinned list), not pip's


class InstallError(DependencyError):
    """pip could not plan or install a plugin's dependencies, or staged what a plan must not hold (one line: what, and why).

    Defined here, beside the checks of staged files; ``app.depinstall`` exports it.
    """


@dataclass(frozen=True)
class Planned:
    """One file pip chose: a wheel, or (only with allow_build) an sdist that will be built.

    ``size`` is the file's, ``unpacked`` what it takes once installed (a wheel's members
    summed; an sdist's own size, since what its build makes is unknown before it runs).
    """

    name: str
    version: str
    filename: str
    size: int
    sha256: str
    unpacked: int = 0

    @property
    def wheel(self) -> bool:
        return self.filename.endswith(".whl")


@dataclass(frozen=True)
class WheelInfo:
    """What a wheel's zip says about it, without unpacking it."""

    unpacked: int
    requires: tuple[str, ...]


def read_wheel(path: Path) -> WheelInfo:
    """A wheel's unpacked size (the central directory's sizes, which zipfile enforces when pip unpacks) and Requires-Dist."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_WHEEL_ENTRIES:
                raise InstallError(f"{path.name} holds {len(members)} files; at most {MAX_WHEEL_ENTRIES} are allowed")
            unpacked = sum(info.file_size for info in members)
            text = _metadata(archive, members, path.name)
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InstallError(f"{path.name} is not a readable wheel: {exc}") from None
    return WheelInfo(unpacked, tuple(HeaderParser().parsestr(text).get_all("Requires-Dist") or ()))


def _metadata(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], filename: str) -> str:
    found = [info for info in members if info.filename.count("/") == 1 and info.filename.endswith(".dist-info/METADATA")]
    if len(found) != 1:
        raise InstallError(f"{filename} has {len(found)} .dist-info/METADATA files; a wheel has one")
    with archive.open(found[0]) as f:
        body = f.read(_MAX_METADATA_BYTES + 1)  # bounded: the header may claim any size
    if len(body) > _MAX_METADATA_BYTES:
        raise InstallError(f"{filename}'s METADATA is larger than {_MAX_METADATA_BYTES >> 20} MiB")
    return body.decode("utf-8", "replace")


def direct_references(name: str, version: str, requires: tuple[str, ...]) -> None:
    """Refuse a distribution that requires ``x @ URL``, whatever its marker: PyPI refuses such uploads too."""
    for text in requires:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue  # pip refuses it itself, and follows nothing
        if req.url:
            shown = " ".join(text.split())[:200]
            raise InstallError(
                f"{name} {version} requires {shown!r}, a direct reference (a URL that pip would fetch or read): "
                "refused, with everything it came with; the package index hosts no such wheel"
            )


def asked_as(req: Requirement, extras: set[str]) -> str | None:
    """``req`` as pip is asked for it (no marker: evaluated here, with the extras asked of its dependant); None if it does not apply."""
    if req.marker is not None and not any(req.marker.evaluate({"extra": extra}) for extra in extras):
        return None
    name = canonicalize_name(req.name)
    return name + (f"[{','.join(sorted(req.extras))}]" if req.extras else "") + str(req.specifier)


def probed(probe: Path, read: dict[str, tuple[str, WheelInfo]]) -> dict[str, WheelInfo]:
    """Each probed wheel's requirements by project (read once; a direct reference refused), merged across versions."""
    merged: dict[str, WheelInfo] = {}
    for path in sorted(probe.glob("*.whl")):
        if path.name not in read:
            try:
                project, version, _, _ = parse_wheel_filename(path.name)
            except InvalidWheelFilename:
                continue  # staged() refuses it after the offline resolve
            found = read_wheel(path)
            direct_references(canonicalize_name(project), str(version), found.requires)
            read[path.name] = (canonicalize_name(project), found)
        name, info = read[path.name]
        merged[name] = WheelInfo(0, (*merged[name].requires, *info.requires) if name in merged else info.requires)
    return merged


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()  # streamed: a wheel may be gigabytes


def staged(stage: Path, allow_build: bool) -> tuple[Planned, ...]:
    """Every file in ``stage`` as the plan shows it; refuse the lot (InstallError) if one must not be there."""
    items, total = [], 0
    for path in sorted(stage.iterdir()):
        if path.name == PINS:
            continue
        item = _item(path, allow_build)
        total += item.unpacked
        if total > MAX_UNPACKED_BYTES:
            limit = f"{MAX_UNPACKED_BYTES >> 20} MiB"  # read at each call: the one limit, whatever its size
            raise InstallError(f"the dependencies unpack to more than {limit} (at {path.name}, the limit of one environment): refused")
        items.append(item)
    return tuple(items)


def _item(path: Path, allow_build: bool) -> Planned:
    if not path.is_file() or path.is_symlink():
        raise InstallError(f"pip left {path.name!r} in the staging folder, which is not a file: refused")
    try:
        if path.name.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(path.name)
        elif allow_build:
            name, version = parse_sdist_filename(path.name)
        else:
            raise InstallError(f"pip fetched {path.name!r}, which is not a wheel: refused (building needs --allow-build)")
    except (InvalidWheelFilename, InvalidSdistFilename):
        raise InstallError(f"pip fetched {path.name!r}, which is not named as a wheel or an sdist: refused") from None
    size = path.stat().st_size
    if not path.name.endswith(".whl"):
        return Planned(canonicalize_name(name), str(version), path.name, size, _digest(path), size)
    info = read_wheel(path)
    direct_references(canonicalize_name(name), str(version), info.requires)
    return Planned(canonicalize_name(name), str(version), path.name, size, _digest(path), info.unpacked)
