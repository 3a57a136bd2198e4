"""Apply a sandbox profile to the current process: rlimits, prctl, Landlock, seccomp.

Called by the plugin child (``python -I -S runner/child/entry.py``) before any
plugin code, ``site.main()`` or third-party import.  The order matters:

1. rlimits        - CORE 0 always; AS/DATA/CPU/FSIZE/NOFILE as configured, and
                    NPROC when the host could not give the plugin a cgroup.
2. PDEATHSIG      - SIGKILL when the host dies; then getppid() is re-checked,
                    because the host may have died before the prctl. seccomp
                    later refuses PR_SET_PDEATHSIG, so the plugin cannot undo it.
3. capabilities   - every set emptied; as root the securebits are locked first,
                    so uid 0 never regains any.
4. Landlock       - filesystem allow-list, TCP connect ports, signal/abstract
                    unix scopes (needs its own syscalls, so before seccomp).
5. seccomp        - last: an allow list, and Landlock's own syscalls must run
                    before any filter is in place.

Profiles: "untrusted" (no sockets at all), "network" (AF_INET/AF_INET6 only,
TCP connect only to ``tcp_ports``), "none" (rlimits only, for trusted
debugging).  Layers the kernel lacks are reported in the result, never
assumed; without Landlock an untrusted plugin's file access is unprotected,
so that is an error unless the caller explicitly opts in.
"""

from __future__ import annotations

import os
import resource

from runner.constants import PROFILES

from . import kernel, landlock, seccomp

TYPE_CHECKING = False  # typing is not imported at run time: start-up cost
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

# The signal module imports enum (~10 ms); SIGKILL is 9 on every Linux arch.
_SIGKILL = 9

# The parent when this module was imported - normally the first thing the
# child does.  If the host dies between then and PR_SET_PDEATHSIG, no signal
# will ever come, but our parent will have changed (to init or a subreaper).
_PPID_AT_IMPORT = os.getppid()

_RLIMITS = {
    "as": resource.RLIMIT_AS,
    "data": resource.RLIMIT_DATA,
    "cpu": resource.RLIMIT_CPU,
    "fsize": resource.RLIMIT_FSIZE,
    "nofile": resource.RLIMIT_NOFILE,
    "tasks": resource.RLIMIT_NPROC,  # counts every task of the user: see _user_tasks()
}


class SandboxError(Exception):
    """The requested sandbox cannot be applied (the plugin must not run)."""


def _clamp(value: int, hard_now: int) -> int:
    # An unprivileged process cannot raise its hard limit: never ask for more
    # than we already have (keeping the stricter existing limit is fine).
    if hard_now == resource.RLIM_INFINITY:
        return value
    return min(value, hard_now)


def apply_rlimits(limits: Mapping[str, int] | None) -> dict[str, int]:
    """Set soft and hard rlimits; return {name: soft limit applied}.

    RLIMIT_CORE is always 0 (a core dump would write plugin memory to disk).
    CPU gets hard = soft + 1: SIGXCPU at the soft limit, SIGKILL a second later.
    """
    wanted = dict(limits or {})
    unknown = sorted(set(wanted) - set(_RLIMITS))
    if unknown:
        raise SandboxError(f"unknown rlimit(s) {unknown}; known: {sorted(_RLIMITS)}")
    for name, value in wanted.items():  # validate everything before changing anything
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SandboxError(f"rlimit {name!r} must be a non-negative int, got {value!r}")
    applied = {"core": 0}
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for name, value in wanted.items():
        res = _RLIMITS[name]
        if name == "tasks":
            if os.geteuid() == 0:
                continue  # RLIMIT_NPROC never applies to uid 0: only a cgroup caps its threads
            value += _user_tasks()  # the limit is per user, not per process: add what already runs
        hard_now = resource.getrlimit(res)[1]
        hard = _clamp(value + 1 if name == "cpu" else value, hard_now)
        soft = min(value, hard)
        try:
            resource.setrlimit(res, (soft, hard))
        except (OSError, ValueError) as exc:
            raise SandboxError(f"cannot set rlimit {name}={value}: {exc}") from None
        applied[name] = soft
    return applied


def _user_tasks() -> int:
    """Threads that this process's real uid runs now, machine-wide (RLIMIT_NPROC counts them)."""
    uid, count = str(os.getuid()).encode(), 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as f:
                fields = dict(line.split(b":", 1) for line in f if line.startswith((b"Uid:", b"Threads:")))
        except (OSError, ValueError):
            continue  # gone, or not ours to read
        if fields.get(b"Uid", b"").split()[:1] == [uid]:
            count += int(fields.get(b"Threads", b"1"))
    return count


def _drop_capabilities(report: dict) -> None:
    try:
        kernel.drop_capabilities()
        # An ordinary user's bounding set stays full (shrinking it needs CAP_SETPCAP);
        # no_new_privs makes it meaningless. Root's must be empty.
        bounded = os.geteuid() == 0
        left = {key: hex(bits) for key, bits in kernel.capability_sets().items() if bits and (bounded or key != "CapBnd")}
    except (OSError, ValueError) as exc:
        raise SandboxError(f"capabilities could not be dropped: {exc}") from None
    if left:
        raise SandboxError(f"capabilities remain after dropping them: {left}")
    report["layers"].append("no-capabilities")


def _set_pdeathsig(ppid_before: int) -> None:
    kernel.set_pdeathsig(_SIGKILL)
    # If the host died before the prctl took effect, no signal will ever come:
    # we have been re-parented (to init or a subreaper).  Leave now, without
    # running any cleanup that could block.
    if not os.getppid() == ppid_before == _PPID_AT_IMPORT:
        os._exit(1)


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1  # no /proc: cannot tell; seccomp's TSYNC still covers threads


def _apply_landlock(read_paths: Iterable[str], write_paths: Iterable[str], tcp_ports: Iterable[int], report: dict) -> None:
    abi = landlock.abi_version()
    if abi < 1:
        for layer in ("landlock-fs", "landlock-net", "landlock-scope"):
            report["missing"].append(f"{layer}: Landlock is not available on this kernel")
        return
    if _thread_count() > 1:
        # Landlock (ABI < 8) restricts only the calling thread.
        raise SandboxError("sandbox must be applied before any thread starts: Landlock would not cover the other threads")
    try:
        applied = landlock.restrict(read_paths, write_paths, tcp_connect_ports=tcp_ports, handle_net=True)
    except (OSError, ValueError, TypeError) as exc:
        raise SandboxError(f"Landlock restriction failed: {exc}") from None
    report["landlock_abi"] = applied
    report["layers"].append("landlock-fs")
    if applied >= landlock.NET_ABI:
        report["layers"].append("landlock-net")
    else:
        report["missing"].append(f"landlock-net: needs Landlock ABI {landlock.NET_ABI}, kernel has {applied} (TCP is not port-restricted)")
    if applied >= landlock.SCOPE_ABI:
        report["layers"].append("landlock-scope")
    else:
        report["missing"].append(
            f"landlock-scope: needs Landlock ABI {landlock.SCOPE_ABI}, kernel has {applied} (signals to the host not blocked)"
        )


def _apply_seccomp(profile: str, allow_unsandboxed: bool, report: dict) -> None:
    try:
        seccomp.install(network=profile == "network")
    except OSError as exc:
        if not allow_unsandboxed:
            raise SandboxError(f"seccomp filter could not be installed: {exc}") from None
        report["missing"].append(f"seccomp: {exc}")
        return
    report["layers"].append("seccomp")


def apply(
    profile: str,
    read_paths: Iterable[str],
    write_paths: Iterable[str],
    tcp_ports: Iterable[int] = (),
    limits: Mapping[str, int] | None = None,
    allow_unsandboxed: bool = False,
) -> dict:
    """Sandbox the current process with ``profile``; return a report of plain types.

    Report: {"profile", "layers" (applied, in order), "landlock_abi" (enforced,
    0 if none), "limits" ({name: soft limit}), "missing" (wanted but
    unavailable, with reasons)}.  Raises SandboxError when the profile cannot be
    enforced; Landlock being absent is tolerated only with allow_unsandboxed.
    Must run before any thread is started.  Irreversible.
    """
    if profile not in PROFILES:
        raise SandboxError(f"unknown sandbox profile {profile!r}; expected one of {PROFILES}")
    ports = list(tcp_ports)
    if ports and profile != "network":
        raise SandboxError(f"tcp_ports need the 'network' profile, not {profile!r}")
    # Refuse before changing anything, so a refused child is still a plain process.
    if profile != "none" and landlock.abi_version() < 1 and not allow_unsandboxed:
        raise SandboxError(
            "Landlock is not available on this kernel: an untrusted plugin's "
            "file access would be unprotected (pass allow_unsandboxed=True "
            "to run it anyway)"
        )
    report: dict = {"profile": profile, "layers": [], "landlock_abi": 0, "limits": {}, "missing": []}
    ppid_before = os.getppid()
    report["limits"] = apply_rlimits(limits)
    report["layers"].append("rlimits")
    if profile == "none":
        return report
    _set_pdeathsig(ppid_before)
    report["layers"].append("pdeathsig")
    _drop_capabilities(report)
    kernel.set_no_new_privs()
    report["layers"].append("no_new_privs")
    _apply_landlock(read_paths, write_paths, ports, report)
    _apply_seccomp(profile, allow_unsandboxed, report)
    return report


def probe() -> dict:
    """What this kernel offers, without applying anything: Landlock ABI, seccomp."""
    try:
        abi = landlock.abi_version()
    except OSError:
        abi = 0
    return {
        "landlock_abi": abi,
        "seccomp": seccomp.available(),
        "arch": kernel.MACHINE,
        "arch_supported": kernel.SUPPORTED,
        "no_new_privs": kernel.no_new_privs(),
        "seccomp_mode": kernel.prctl(kernel.PR_GET_SECCOMP),
    }
