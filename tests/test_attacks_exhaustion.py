"""Attacks on the machine: threads and memory beyond a plugin's share.

An outside review created 8,000 threads from one plugin (nothing capped them) and held
5.3 GiB in memfd pages that RLIMIT_AS does not count while ``plugins health`` showed
14 MiB. Now each plugin process gets a cgroup of its own when the host can make one
(pids.max, a memory limit that charges shared memory); where it cannot, RLIMIT_NPROC
caps an unprivileged user's threads and memfd_create is refused.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from pathlib import Path

import pytest

import runner
from app import PluginManager
from app.health import probe_all
from runner import Limits, Plugin
from tests.attackkit import Host, assert_host_healthy

pytestmark = pytest.mark.timeout(90)
MiB = 2**20


def limited(manager: PluginManager, name: str, **limits: int) -> Plugin:
    config = manager.launch_config(name)
    return Plugin(replace(config, sandbox=replace(config.sandbox, limits=replace(Limits(), **limits))))


def test_thread_bomb_stops_at_the_task_cap(attacks: PluginManager, host: Host) -> None:
    with contextlib.closing(limited(attacks, "exhaust", tasks=64)) as client:
        answer = client.generate_response("", "threads")
        caged = client.containment()
    assert answer.startswith("BLOCKED: thread "), answer
    started = int(answer.split()[2]) - 1
    if caged.get("cgroup"):
        assert started < 64, answer  # the main thread counts against pids.max too
    else:
        assert os.geteuid() != 0, "root without a cgroup has no task cap: " + caged.get("cgroup_missing", "")
        assert started <= 64, answer  # RLIMIT_NPROC, on top of what the user already ran
    assert_host_healthy(attacks, host)


def test_default_task_cap_applies_to_every_plugin(attacks: PluginManager, host: Host) -> None:
    answer = attacks.handle("exhaust").generate_response("", "threads")
    assert answer.startswith("BLOCKED: thread "), answer
    assert int(answer.split()[2]) <= Limits().tasks + 1
    assert_host_healthy(attacks, host)


def test_shared_memory_is_charged_and_capped(attacks: PluginManager, host: Host) -> None:
    with contextlib.closing(limited(attacks, "exhaust", memory=192 * MiB)) as client:
        client.start()
        caged = client.containment()
        if not caged.get("cgroup"):
            pytest.skip(f"no cgroup here ({caged.get('cgroup_missing')}): RLIMIT_AS alone bounds shared memory")
        assert client.generate_response("", "shared 64").startswith("LEAKED: holding 64 MiB"), "the control fits"
        charged = client.containment()["memory_bytes"]
        assert charged is not None and charged >= 64 * MiB  # shared pages counted, unlike a bare RSS of them
        with pytest.raises(runner.PluginCrashed, match=r"over its memory limit \(192 MiB\)"):
            client.generate_response("", "shared 1024")
    assert_host_healthy(attacks, host)


def test_health_reports_the_cgroup_and_its_memory(attacks: PluginManager, host: Host) -> None:
    report = probe_all(attacks, ["exhaust"])[0]
    assert report["healthy"], report
    if report["cgroup"]:
        assert f"cgroup ({report['cgroup']})" in report["layers"]
        assert report["memory_bytes"] and report["memory_bytes"] > 0
    else:
        assert any(m.startswith("cgroup: ") for m in report["missing_layers"]), report
    assert_host_healthy(attacks, host)


def _cgroup_dirs(name: str) -> list[Path]:
    """This host's cgroup directories for plugin ``name``, in every hierarchy (the world, not our word)."""
    return [p for p in Path("/sys/fs/cgroup").rglob(f"sandchat-{os.getpid()}-{name}-*") if p.is_dir()]


def test_no_cgroup_directory_outlives_its_plugin(attacks: PluginManager, host: Host) -> None:
    client = attacks.handle("exhaust")
    client.start()
    if client.containment().get("cgroup") in ("cgroup1", "cgroup2"):
        assert _cgroup_dirs("exhaust")
    attacks.forget("exhaust")
    assert _cgroup_dirs("exhaust") == []
    assert_host_healthy(attacks, host)
