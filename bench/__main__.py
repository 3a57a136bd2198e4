"""``python -m bench``: measure every figure of issue 7 beside its baseline and print the table.

    python -m bench                 # every figure, one CPU and free placement (a few minutes)
    python -m bench --quick         # a short run (smoke test; figures are rougher)
    python -m bench --json          # one JSON document on stdout instead of the table
    python -m bench --figures 1,8   # only some figures
    python -m bench --placement one # only one placement

Each figure module runs in its own worker process (``--worker PLACEMENT``), which pins
itself to CPU 0 or unpins itself before it starts anything, so the plugin and the
baseline peers it starts inherit the same placement. Exit status: 0 when every target
holds, 1 when one does not, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

from bench.common import PYTHON, ROOT, Row, Settings, apply_placement

#: figure -> module; modules measure several figures at once.
MODULES = {"1": "calls", "3": "calls", "2": "payload", "4": "startup", "5": "startup", "6": "tokencount", "7": "cli", "8": "peers",
           "9": "stderrflood", "10": "roundrobin", "11": "roundrobin", "12": "egress", "13": "web", "14": "agent"}  # fmt: skip
ORDER = ["calls", "payload", "startup", "tokencount", "cli", "peers", "stderrflood", "roundrobin", "egress", "web", "agent"]
PLACEMENTS = {"one": "one CPU (taskset -c 0)", "free": "free placement"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="sandchat's performance figures beside their baselines")
    parser.add_argument("--quick", action="store_true", help="a short run: fewer repetitions, a shorter stream")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--figures", default="", metavar="LIST", help="comma-separated figure numbers (default: all)")
    parser.add_argument("--placement", choices=["both", "one", "free"], default="both")
    parser.add_argument("--worker", metavar="PLACEMENT", help=argparse.SUPPRESS)
    parser.add_argument("--module", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    settings = Settings(quick=args.quick)
    if args.worker:
        return _worker(args.worker, args.module, settings)
    wanted = [f.strip() for f in args.figures.split(",") if f.strip()] or list(MODULES)
    unknown = [f for f in wanted if f not in MODULES]
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(unknown)} (known: {', '.join(sorted(MODULES))})")
    modules = [m for m in ORDER if any(MODULES[f] == m for f in wanted)]
    placements = ["one", "free"] if args.placement == "both" else [args.placement]
    rows: list[Row] = []
    began = time.monotonic()
    for module in modules:
        for placement in placements:
            _progress(f"bench: {module} ({PLACEMENTS[placement]}) ...")
            rows.extend(_run_worker(module, placement, settings))
    rows = [r for r in rows if r.figure.rstrip("abcdefghijklmnopqrstuvwxyz") in wanted]  # "14bm" is figure 14's
    passed = all(r.passed is not False for r in rows)
    report = {"machine": machine(), "quick": settings.quick, "seconds": round(time.monotonic() - began, 1),
              "passed": passed, "rows": [r.as_dict() for r in rows]}  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    return 0 if passed else 1


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _run_worker(module: str, placement: str, settings: Settings) -> list[Row]:
    argv = [PYTHON, "-m", "bench", "--worker", placement, "--module", module] + (["--quick"] if settings.quick else [])
    done = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench: the {module} worker ({placement}) failed with status {done.returncode}")
    return [Row.from_dict(d) for d in json.loads(done.stdout)]


def _worker(placement: str, module: str, settings: Settings) -> int:
    apply_placement(placement)  # before anything starts: children inherit it
    rows = importlib.import_module(f"bench.{module}").run(settings, placement)
    print(json.dumps([r.as_dict() for r in rows]))
    return 0


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    try:
        import msgpack

        msgpack_version = ".".join(map(str, msgpack.version))
    except ImportError:
        msgpack_version = "absent"
    try:
        from importlib.metadata import version

        mcp_version = version("mcp")
    except Exception:
        mcp_version = "absent"
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(next(line.split()[1] for line in f if line.startswith("MemTotal:"))) // 1024
    except (OSError, StopIteration, ValueError):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cpu": model, "cpus": os.cpu_count(), "memory_mib": mem, "kernel": platform.release(),
        "python": platform.python_version(), "msgpack": msgpack_version, "mcp": mcp_version,
        "load_average_at_end": round(load, 2) if load is not None else None,
    }  # fmt: skip


def _num(value: float, unit: str) -> str:
    if value != value:  # NaN
        return "-"
    if unit == "MiB/s":
        return f"{value:,.0f}"
    return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


def _ratio(row: dict[str, Any]) -> str:
    ratio, limit = row["ratio"], row["limit"]
    if ratio is None:
        return "-"
    if limit is not None and limit <= 0.1:
        return f"{ratio * 100:.2f}%"
    return f"{ratio:.2f}×"


def _target(row: dict[str, Any]) -> str:
    if not row["op"] or row["limit"] is None:
        return "(info)"
    sign = "≤" if row["op"] == "<=" else "≥"
    limit = row["limit"]
    return f"{sign} {limit * 100:g}%" if limit <= 0.1 else f"{sign} {limit:g}×"


def render(report: dict[str, Any]) -> str:
    """The table, as Markdown (the README carries it verbatim)."""
    m = report["machine"]
    lines = [
        f"Machine: {m['cpu'] or 'unknown CPU'}, {m['cpus']} CPUs, {m['memory_mib']:,} MiB, Linux {m['kernel']}, "
        f"Python {m['python']}, msgpack {m['msgpack']}, mcp {m['mcp']}; load average at the end {m['load_average_at_end']}."
        + (" Quick run." if report["quick"] else ""),
        "",
        "| # | figure | placement | sandchat median (p99) | baseline | baseline median (p99) | ratio | target | result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        unit = row["unit"]
        subject = f"{_num(row['subject']['median'], unit)} ({_num(row['subject']['p99'], unit)}) {unit}"
        base = row["baseline"]
        baseline = f"{_num(base['median'], unit)} ({_num(base['p99'], unit)}) {unit}" if base else "-"
        result = {True: "PASS", False: "**FAIL**", None: "-"}[row["passed"]]
        if row["note"] and row["passed"] is None and row["baseline"] is None:
            result = "skipped"
        placement = "one CPU" if row["placement"] == "one" else "free"
        lines.append(f"| {row['figure']} | {row['name'].strip()} | {placement} | {subject} | {row['baseline_name']} | {baseline} "
                     f"| {_ratio(row)} | {_target(row)} | {result} |")  # fmt: skip
    notes = sorted({row["note"] for row in report["rows"] if row["note"]})
    lines += [""] + [f"- {note}" for note in notes] if notes else []
    lines += ["", f"All targets hold: {'yes' if report['passed'] else 'NO'} ({report['seconds']:.0f} s)."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
