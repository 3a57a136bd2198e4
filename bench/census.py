"""A measured census of the system calls sandboxed plugin children make.

``python -m bench.census [--json PATH] [--trace PATH] [--from-trace PATH] [pytest args...]``

Runs pytest (by default the suites that start sandboxed plugins) under
``strace -f -q -X verbose -s 0``, then reads the trace back and counts, for the
sandboxed tasks only, every system call made *after* the seccomp filter went on:

* a task is sandboxed from the line where it completed
  ``seccomp(SECCOMP_SET_MODE_FILTER, ...) = 0``; with SECCOMP_FILTER_FLAG_TSYNC
  every thread of its thread group alive then is sandboxed from that line too;
* a task cloned (thread or process) by a task already sandboxed is sandboxed for
  its whole life. Children are found from clone/clone3/fork/vfork return values.

PIDs are reused (pid_max may be 32768), so each tid's life is cut at strace's
``+++ exited/killed +++`` markers (hence ``-q``, not ``-qq``) and at the clone that
returns it again; every life ("incarnation") is tracked on its own.

``-s 0`` keeps read/write buffers out of the trace; paths are not strings to strace
and stay whole, but argv does not. So each sandboxed process is mapped to its plugin
file by the first ``.py`` file it opens after the filter that is not part of Python,
site-packages or sandchat's runner (that is the loader's ``exec_module``). A process
is an *attack* process when that file, or any path it touched, is under
``/tests/attacks/`` (or has the name of a file there: some tests copy an attack
plugin into a user plugin folder). The pytest process stats a marker path at the start of every
test (this module is loaded into pytest with ``-p bench.census``), so each process
is also mapped to the test that was running when it was started.

Argument values are kept for the multiplexed calls (ioctl, fcntl, prctl, clone,
socket, ...), as strace's ``-X verbose`` names them, and every call that failed
with EPERM or ENOSYS is listed with its arguments: those are what the current
deny list already refuses (or the kernel lacks), and libc may have fallen back.

Writes a JSON file (``--json``, default /tmp/sandchat-census.json) and prints a
markdown summary (also written with ``--markdown PATH``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

MARKER = "/sandchat-census-marker/"
DEFAULT_SELECTION = (
    "tests/test_shipped_plugins_sandboxed.py",
    "tests/test_local_plugin.py",
    "tests/test_authoring.py",
    "tests/test_plugin_guide.py",
    "tests/test_failures.py",
    "tests/test_supervision.py",
    "tests/test_attacks.py",
)
ATTACK_DIR = "/tests/attacks/"


# --- pytest plugin side (imported into the traced pytest with ``-p bench.census``) -----


def pytest_runtest_logstart(nodeid, location):  # pragma: no cover - runs under strace
    """Leave a mark in the trace: a stat of a path that names the test."""
    try:
        os.stat(MARKER + nodeid)
    except OSError:
        pass


# --- trace line parsing ---------------------------------------------------------------

_LINE = re.compile(r"^(\d+) +(.*)$")
_CALL = re.compile(r"^([a-z_][a-z0-9_]*|\?\?\?)\((.*)$", re.S)
_RESUMED = re.compile(r"^<\.\.\. ([a-z_][a-z0-9_]*|\?\?\?) resumed>(.*)$", re.S)
_RET = re.compile(r"\)\s+= (.*)$")
_ERRNO = re.compile(r"^-1 (E[A-Z0-9]+)\b")
_PATH = re.compile(r'"(/[^"]*)"')
_COMMENT = re.compile(r"/\*\s*(.*?)\s*\*/")
_CLONES = ("clone", "clone3", "fork", "vfork")


def split_args(text: str) -> list[str]:
    """Split strace's argument text at top-level commas (strings, brackets, comments)."""
    if not any(c in text for c in '"([{/'):
        return [part.strip() for part in text.split(",")] if text.strip() else []
    out, depth, cur, i, n = [], 0, [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            cur.append(text[i : j + 1])
            i = j + 1
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            cur.append(text[i:j])
            i = j
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    if cur and "".join(cur).strip():
        out.append("".join(cur).strip())
    return out


def value_name(arg: str) -> str:
    """``0x3 /* PROT_READ|PROT_WRITE */`` -> ``PROT_READ|PROT_WRITE (0x3)``; raw when undecoded."""
    arg = arg.strip()
    if "=" in arg.split("/*", 1)[0] and not arg.startswith("{"):
        arg = arg.split("=", 1)[1].strip()  # clone's "flags=0x... /* ... */"
    names = _COMMENT.findall(arg)
    if not names:
        return arg
    raw = _COMMENT.sub("", arg).replace(" ", "")
    return f"{'|'.join(names)} ({raw})"


def named_field(args: list[str], field: str) -> str | None:
    """The value of ``field=`` among the arguments, or inside a struct argument (clone3)."""
    for a in args:
        parts = split_args(a.strip()[1:]) if a.strip().startswith("{") else [a]
        for part in parts:
            if part.startswith(field + "="):
                return value_name(part[len(field) + 1 :])
    return None


def shown_args(args: list[str]) -> str:
    """A failed call's arguments without pointers, for telling denied uses apart."""
    out = []
    for a in args:
        if a.startswith("{"):
            flags = named_field([a], "flags")
            out.append("{flags=" + flags + "}" if flags else "{...}")
        elif "/*" in a:
            out.append(value_name(a))
        elif a.startswith('"'):
            out.append(a if len(a) < 80 else a[:77] + '..."')
        elif re.fullmatch(r"0x[0-9a-f]{7,}", a):
            out.append("ptr")
        else:
            out.append(a if len(a) < 40 else a[:37] + "...")
    return ", ".join(out)


def arg(args: list[str], index: int) -> str | None:
    return value_name(args[index]) if index < len(args) else None


#: For each multiplexed call: (label, function(args) -> value) pairs.
ARG_FIELDS = {
    "ioctl": [("request", lambda a: arg(a, 1))],
    "fcntl": [("cmd", lambda a: arg(a, 1))],
    "prctl": [("option", lambda a: arg(a, 0))],
    "clone": [("flags", lambda a: named_field(a, "flags"))],
    "clone3": [("flags", lambda a: named_field(a, "flags"))],
    "socket": [("domain, type, protocol", lambda a: ", ".join(value_name(x) for x in a[:3]))],
    "socketpair": [("domain, type, protocol", lambda a: ", ".join(value_name(x) for x in a[:3]))],
    "sendto": [("flags", lambda a: arg(a, 3))],
    "sendmsg": [("flags", lambda a: arg(a, 2))],
    "sendmmsg": [("flags", lambda a: arg(a, 3))],
    "recvfrom": [("flags", lambda a: arg(a, 3))],
    "recvmsg": [("flags", lambda a: arg(a, 2))],
    "recvmmsg": [("flags", lambda a: arg(a, 3))],
    "setsockopt": [("level, optname", lambda a: ", ".join(value_name(x) for x in a[1:3]))],
    "getsockopt": [("level, optname", lambda a: ", ".join(value_name(x) for x in a[1:3]))],
    "madvise": [("advice", lambda a: arg(a, 2))],
    "mmap": [("prot", lambda a: arg(a, 2)), ("flags", lambda a: arg(a, 3))],
    "mprotect": [("prot", lambda a: arg(a, 2))],
    "pkey_mprotect": [("prot", lambda a: arg(a, 2))],
    "mremap": [("flags", lambda a: arg(a, 3))],
    "futex": [("op", lambda a: (_COMMENT.findall(a[1]) or [a[1]])[0] if len(a) > 1 else None)],
    "prlimit64": [("resource, new", lambda a: f"{arg(a, 1)}, {'NULL' if len(a) > 2 and a[2] == 'NULL' else 'set'}")],
    "rt_sigprocmask": [("how", lambda a: arg(a, 0))],
    "kill": [("sig", lambda a: arg(a, 1))],
    "tgkill": [("sig", lambda a: arg(a, 2))],
    "mknodat": [("mode", lambda a: arg(a, 2))],
    "seccomp": [("op", lambda a: arg(a, 0))],
    "connect": [("family", lambda a: named_field(a, "sa_family"))],
    "arch_prctl": [("code", lambda a: arg(a, 0))],
    "mbind": [("mode", lambda a: arg(a, 2))],
    "fadvise64": [("advice", lambda a: arg(a, 3))],
    "getrandom": [("flags", lambda a: arg(a, 2))],
    "epoll_create1": [("flags", lambda a: arg(a, 0))],
    "pipe2": [("flags", lambda a: arg(a, 1))],
    "eventfd2": [("flags", lambda a: arg(a, 1))],
    "sched_getaffinity": [("pid", lambda a: arg(a, 0))],
    "wait4": [("options", lambda a: arg(a, 2))],
    "bind": [("family", lambda a: named_field(a, "sa_family"))],
}


class Incarnation:
    """One life of one tid in the trace."""

    __slots__ = (
        "id",
        "tid",
        "first",
        "last",
        "parent",
        "clone_start",
        "clone_done",
        "is_thread",
        "seccomp_at",
        "tsync",
        "paths_py",
        "touched_attack",
        "exe",
        "script",
        "exited",
        "setsid",
    )

    def __init__(self, id_: int, tid: int, first: int) -> None:
        self.id, self.tid, self.first, self.last = id_, tid, first, first
        self.parent = None  # Incarnation id
        self.clone_start = self.clone_done = None
        self.is_thread = False
        self.seccomp_at = None  # line index of its own successful SECCOMP_SET_MODE_FILTER
        self.tsync = False
        self.paths_py: list[tuple[int, str]] = []
        self.touched_attack = False
        self.exe = None
        self.script = None
        self.exited = False
        self.setsid = False  # runner.process starts each child in a new session


class Walker:
    """Turns trace lines into completed syscalls per incarnation.

    Both passes run the same Walker over the same file, so incarnation ids match.
    ``on_call(idx, inc, name, args_text, ret_text, start_idx)`` is called for every
    completed (or abandoned) syscall; with ``collect`` the first pass also records
    clones, seccomp, execve, setsid, paths and test markers on the incarnations.
    """

    def __init__(self, collect: bool) -> None:
        self.collect = collect
        self.incs: list[Incarnation] = []
        self.cur: dict[int, Incarnation] = {}
        self.pending: dict[int, tuple[str, str, int]] = {}  # tid -> (name, args prefix, start idx)
        self.markers: list[tuple[int, str]] = []
        self.stats = collections.Counter()

    def inc_for(self, tid: int, idx: int) -> Incarnation:
        inc = self.cur.get(tid)
        if inc is None:
            inc = Incarnation(len(self.incs), tid, idx)
            self.incs.append(inc)
            self.cur[tid] = inc
        inc.last = idx
        return inc

    def close(self, tid: int, idx: int) -> None:
        inc = self.cur.pop(tid, None)
        if inc is not None:
            inc.exited = True
            inc.last = idx
        pend = self.pending.pop(tid, None)
        if pend is not None and inc is not None:  # a call the task never came back from
            self.stats["abandoned_calls"] += 1
            self.on_call(pend[2], inc, pend[0], pend[1], "?", pend[2])

    def run(self, path: str, on_call=None) -> None:
        self.on_call = on_call or (lambda *a: None)
        with open(path, encoding="utf-8", errors="replace") as f:
            for idx, line in enumerate(f):
                self.line(idx, line.rstrip("\n"))
        for tid in list(self.cur):
            pend = self.pending.pop(tid, None)
            if pend is not None:
                self.stats["unfinished_at_end"] += 1
                self.on_call(pend[2], self.cur[tid], pend[0], pend[1], "?", pend[2])

    def line(self, idx: int, line: str) -> None:
        m = _LINE.match(line)
        if not m:
            self.stats["unparsed_lines"] += 1
            return
        tid, rest = int(m.group(1)), m.group(2)
        if rest.startswith("+++ "):
            if "exited with" in rest or "killed by" in rest or "superseded" in rest:
                self.close(tid, idx)
            return
        if rest.startswith("--- "):
            self.inc_for(tid, idx)
            return
        if rest.startswith("<... "):
            rm = _RESUMED.match(rest)
            pend = self.pending.pop(tid, None)
            inc = self.inc_for(tid, idx)
            if not rm or pend is None:
                self.stats["orphan_resumed"] += 1
                return
            self.complete(idx, inc, pend[0], pend[1] + rm.group(2), pend[2])
            return
        cm = _CALL.match(rest)
        if not cm:
            self.stats["unparsed_lines"] += 1
            return
        name, tail = cm.group(1), cm.group(2)
        inc = self.inc_for(tid, idx)
        if tail.endswith(" <unfinished ...>"):
            self.pending[tid] = (name, tail[: -len(" <unfinished ...>")], idx)
            return
        self.complete(idx, inc, name, tail, idx)

    def complete(self, idx: int, inc: Incarnation, name: str, tail: str, start: int) -> None:
        rets = list(_RET.finditer(tail))
        if rets:
            ret = rets[-1].group(1)
            args_text = tail[: rets[-1].start()]
        else:
            ret, args_text = "?", tail.rstrip(")")
        if name in _CLONES:
            self.clone_done(idx, inc, name, args_text, ret, start)
        if self.collect:
            self.observe(idx, inc, name, args_text, ret)
        self.on_call(idx, inc, name, args_text, ret, start)

    def clone_done(self, idx, inc, name, args_text, ret, start) -> None:
        try:
            child_tid = int(ret.split()[0])
        except ValueError:
            return
        if child_tid <= 0:
            return
        child = self.cur.get(child_tid)
        if child is not None and (child.parent is not None or child.first < start or child is inc):
            self.stats["tid_reused_without_exit"] += 1
            self.cur.pop(child_tid)
            child = None
        if child is None:
            child = self.inc_for(child_tid, idx)
        child.parent = inc.id
        child.clone_start, child.clone_done = start, idx
        child.is_thread = "CLONE_THREAD" in args_text or _has_clone_thread(args_text)

    def observe(self, idx, inc, name, args_text, ret) -> None:
        if MARKER in args_text:
            pm = args_text.split(MARKER, 1)[1].split('"', 1)[0]
            self.markers.append((idx, pm))
            return
        if name == "seccomp" and "SECCOMP_SET_MODE_FILTER" in args_text and ret.split()[0] == "0":
            if inc.seccomp_at is None:
                inc.seccomp_at = idx
                inc.tsync = "TSYNC" in args_text
            return
        if name == "setsid" and not ret.startswith("-1"):
            inc.setsid = True
            return
        if name == "execve" and ret.split()[0] == "0":
            pm = _PATH.search(args_text)
            inc.exe = pm.group(1) if pm else None
            inc.script = None
            return
        if '"/' not in args_text:
            return
        for path in _PATH.findall(args_text):
            if ATTACK_DIR in path:
                inc.touched_attack = True
            if path.endswith("/runner/child/entry.py") and inc.script is None:
                inc.script = path
            if path.endswith(".py") and name in ("openat", "open") and not ret.startswith("-1") and len(inc.paths_py) < 400:
                inc.paths_py.append((idx, path))


def _has_clone_thread(args_text: str) -> bool:
    m = re.search(r"flags=(0x[0-9a-f]+|\d+)", args_text)
    return bool(m and int(m.group(1), 0) & 0x10000)


def _is_runtime_path(path: str, root: str | None) -> bool:
    if "/lib/python3" in path or "site-packages" in path or "dist-packages" in path:
        return True
    if root and (path.startswith(root + "/runner/") or path == root + "/llm_utils.py"):
        return True
    return False


# --- analysis -----------------------------------------------------------------------


def sandbox_starts(incs: list[Incarnation]) -> tuple[dict[int, int], dict[int, int]]:
    """({incarnation id: first line index under the filter, -1 for a whole life},
    {incarnation id: id of its thread group's first incarnation})."""
    group: dict[int, int] = {}

    def root_of(inc: Incarnation) -> int:
        if inc.id in group:
            return group[inc.id]
        chain, cur = [], inc
        while cur.is_thread and cur.parent is not None and cur.id not in group:
            chain.append(cur)
            cur = incs[cur.parent]
        r = group.get(cur.id, cur.id)
        for c in chain + [cur]:
            group[c.id] = r
        return r

    members = collections.defaultdict(list)
    for inc in incs:
        members[root_of(inc)].append(inc)
    tsync_at: dict[int, int] = {}
    for r, ms in members.items():
        times = [m.seccomp_at for m in ms if m.seccomp_at is not None and m.tsync]
        if times:
            tsync_at[r] = min(times)
    start: dict[int, int] = {}
    for inc in incs:  # parents always precede children in creation order, except early child lines
        s = inc.seccomp_at + 1 if inc.seccomp_at is not None else None
        t = tsync_at.get(group[inc.id])
        if t is not None and inc.first <= t <= inc.last:
            s = t + 1 if s is None else min(s, t + 1)
        start[inc.id] = s
    # inheritance: iterate until stable (clone chains are short)
    for _ in range(64):
        changed = False
        for inc in incs:
            if inc.parent is None:
                continue
            ps = start.get(inc.parent)
            if ps is not None and ps <= inc.clone_start and start[inc.id] != -1:
                start[inc.id] = -1  # whole life under the filter
                changed = True
        if not changed:
            break
    return {k: v for k, v in start.items() if v is not None}, group


class Census:
    def __init__(self) -> None:
        self.calls = collections.Counter()
        self.errors = collections.defaultdict(collections.Counter)
        self.tests = collections.defaultdict(set)
        self.plugins = collections.defaultdict(set)
        self.args = collections.defaultdict(lambda: collections.defaultdict(collections.Counter))
        self.failed = collections.defaultdict(collections.Counter)  # (name, errno) -> {args: n}

    def add(self, name, args_text, ret, test_file, plugin) -> None:
        self.calls[name] += 1
        if test_file:
            self.tests[name].add(test_file)
        if plugin:
            self.plugins[name].add(plugin)
        em = _ERRNO.match(ret)
        if em:
            self.errors[name][em.group(1)] += 1
        fields = ARG_FIELDS.get(name)
        need_args = fields or (em and em.group(1) in ("EPERM", "ENOSYS", "EACCES"))
        if not need_args:
            return
        args = split_args(args_text)
        for label, fn in fields or ():
            try:
                value = fn(args)
            except Exception:  # a shape strace did not decode as expected
                value = "<unparsed>"
            if value is not None:
                self.args[name][label][value] += 1
        if em and em.group(1) in ("EPERM", "ENOSYS", "EACCES"):
            self.failed[(name, em.group(1))][shown_args(args)[:300]] += 1

    def as_json(self) -> dict:
        return {
            "syscalls": {
                name: {
                    "calls": n,
                    "errors": dict(self.errors.get(name, {})),
                    "test_files": sorted(self.tests.get(name, ())),
                    "plugins": sorted(self.plugins.get(name, ())),
                }
                for name, n in sorted(self.calls.items())
            },
            "args": {name: {label: dict(c.most_common()) for label, c in d.items()} for name, d in sorted(self.args.items())},
            "failed_eperm_enosys_eacces": [
                {"syscall": name, "errno": err, "calls": sum(c.values()), "args": dict(c.most_common(20))}
                for (name, err), c in sorted(self.failed.items())
            ],
        }


def analyse(trace: str) -> dict:
    t0 = time.monotonic()
    w1 = Walker(collect=True)
    w1.run(trace)
    incs = w1.incs
    starts, group = sandbox_starts(incs)
    markers = w1.markers
    marker_idx = [i for i, _ in markers]

    def test_at(idx: int) -> str | None:
        import bisect

        k = bisect.bisect_right(marker_idx, idx) - 1
        return markers[k][1] if k >= 0 else None

    # tests copy some attack plugins elsewhere (a user plugin folder under tmp): same file name
    attack_names = set()
    for inc in incs:
        if inc.script:
            folder = inc.script[: -len("/runner/child/entry.py")] + ATTACK_DIR
            if os.path.isdir(folder):
                attack_names.update(n for n in os.listdir(folder) if n.endswith(".py"))
            break
    # process = the process-level incarnation (thread-group root); describe the sandboxed ones
    procs: dict[int, dict] = {}
    for inc_id in starts:
        r = group[inc_id]
        procs.setdefault(r, {"threads": set(), "start": None})
        procs[r]["threads"].add(inc_id)
    for r in sorted(procs, key=lambda r: incs[r].first):  # parents before the processes they fork
        p = procs[r]
        members = [incs[i] for i in p["threads"]]
        root_inc = incs[r]
        test = test_at(root_inc.first)
        p.update({"pid": root_inc.tid, "test": test, "test_file": test.split("::", 1)[0] if test else None})
        if starts.get(r) == -1 and root_inc.parent is not None and group[root_inc.parent] in procs:
            # forked by a sandboxed process (a fork that got through): same plugin as its parent
            parent = procs[group[root_inc.parent]]
            p.update(
                {
                    "plugin": parent["plugin"],
                    "attack": parent["attack"],
                    "test": parent["test"],
                    "test_file": parent["test_file"],
                    "kind": "forked-after-filter",
                }
            )
            continue
        s_root = starts.get(r, -1)
        script = next((m.script for m in [root_inc] + members if m.script), None)
        root_dir = script[: -len("/runner/child/entry.py")] if script else None
        plugin = None
        cands = sorted((i, path) for m in members for i, path in m.paths_py if i >= s_root)
        for _, path in cands:
            if not _is_runtime_path(path, root_dir):
                plugin = path
                break
        attack = bool(plugin and (ATTACK_DIR in plugin or os.path.basename(plugin) in attack_names)) or any(
            m.touched_attack for m in members
        )
        p.update({"plugin": plugin, "script": script, "attack": attack, "kind": "filter-installer"})

    unfiltered = []
    for inc in incs:
        if inc.script and inc.setsid and inc.exe and group[inc.id] == inc.id and inc.id not in procs:
            unfiltered.append(
                {"pid": inc.tid, "test": test_at(inc.first), "attack": inc.touched_attack or any(ATTACK_DIR in p for _, p in inc.paths_py)}
            )

    legit, attack = Census(), Census()
    per_proc_calls = collections.Counter()

    def on_call(idx, inc, name, args_text, ret, start_idx):
        s = starts.get(inc.id)
        if s is None or (s != -1 and start_idx < s):
            return
        if name == "???":  # strace could not read the number: the task was killed on entry
            w2.stats["unknown_syscall_at_kill"] += 1
            return
        p = procs[group[inc.id]]
        per_proc_calls[group[inc.id]] += 1
        (attack if p["attack"] else legit).add(name, args_text, ret, p["test_file"], p["plugin"])

    w2 = Walker(collect=False)
    w2.run(trace, on_call=on_call)
    assert len(w2.incs) == len(incs), "the two passes disagree about incarnations"

    proc_list = []
    for r, p in sorted(procs.items(), key=lambda kv: incs[kv[0]].first):
        proc_list.append(
            {
                "pid": p["pid"],
                "plugin": p["plugin"],
                "attack": p["attack"],
                "test": p["test"],
                "kind": p["kind"],
                "threads": len(p["threads"]),
                "calls": per_proc_calls[r],
            }
        )
    return {
        "trace": trace,
        "trace_lines": sum(1 for _ in open(trace, "rb")) if os.path.exists(trace) else None,
        "parse_seconds": round(time.monotonic() - t0, 1),
        "diagnostics": {**w1.stats, **{k: v for k, v in w2.stats.items() if k not in w1.stats}},
        "incarnations": len(incs),
        "sandboxed_processes": {
            "total": len(proc_list),
            "legit": sum(1 for p in proc_list if not p["attack"]),
            "attack": sum(1 for p in proc_list if p["attack"]),
            "without_plugin_file": sum(1 for p in proc_list if not p["plugin"]),
        },
        "tests_marked": len(markers),
        "child_processes_without_filter": unfiltered,
        "legit": legit.as_json(),
        "attack": attack.as_json(),
        "processes": proc_list,
    }


# --- reporting ----------------------------------------------------------------------


def markdown(result: dict) -> str:
    out = []
    add = out.append
    add("# sandchat seccomp census\n")
    if result.get("command"):
        add(f"Command: `{' '.join(result['command'])}`  ")
        add(f"pytest exit status: {result.get('pytest_exit')}, {result.get('pytest_summary', '')}  ")
    add(f"Kernel {result.get('kernel', '?')}, {result.get('strace_version', '')}, trace {result.get('trace_lines')} lines.  ")
    sp = result["sandboxed_processes"]
    add(
        f"Sandboxed processes: {sp['total']} ({sp['legit']} legitimate, {sp['attack']} attack; "
        f"{sp['without_plugin_file']} never opened a plugin file after the filter).  "
    )
    nf = result.get("child_processes_without_filter", [])
    add(
        f"runner/child/entry.py processes that never installed the filter (profile none, refused, or killed first; "
        f"not counted): {len(nf)}.  "
    )
    add(f"Parser diagnostics: {result['diagnostics']}\n")
    for key, title in (("legit", "Legitimate (everything except tests/attacks plugins)"), ("attack", "Attack plugins (tests/attacks)")):
        c = result[key]
        add(f"## {title}\n")
        names = sorted(c["syscalls"])
        add(f"{len(names)} syscalls: `{' '.join(names)}`\n")
        add("| syscall | calls | errors | test files | plugins |")
        add("| --- | ---: | --- | --- | --- |")
        for name in names:
            s = c["syscalls"][name]
            errs = ", ".join(f"{e} {n}" for e, n in sorted(s["errors"].items()))
            files = ", ".join(f.replace("tests/", "") for f in s["test_files"])
            plugins = sorted({os.path.basename(p).removesuffix(".py") for p in s["plugins"]})
            shown = ", ".join(plugins[:5]) + (f" +{len(plugins) - 5}" if len(plugins) > 5 else "")
            add(f"| {name} | {s['calls']} | {errs} | {files} | {shown} |")
        add("")
        add("### Argument values\n")
        add("| syscall | argument | values (count) |")
        add("| --- | --- | --- |")
        for name, labels in c["args"].items():
            for label, values in labels.items():
                vals = "; ".join(f"`{v}` {n}" for v, n in values.items())
                add(f"| {name} | {label} | {vals} |")
        add("")
        if c["failed_eperm_enosys_eacces"]:
            add("### Calls that failed with EPERM / ENOSYS / EACCES\n")
            add("| syscall | errno | calls | arguments (count) |")
            add("| --- | --- | ---: | --- |")
            for f in c["failed_eperm_enosys_eacces"]:
                vals = "; ".join(f"`{v}` {n}" for v, n in list(f["args"].items())[:6])
                add(f"| {f['syscall']} | {f['errno']} | {f['calls']} | {vals} |")
            add("")
    return "\n".join(out)


def _pytest_summary(stdout: str) -> str:
    lines = [line for line in stdout.splitlines() if line.startswith("=") and (" passed" in line or " failed" in line or " error" in line)]
    return lines[-1].strip("= ") if lines else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.census",
        allow_abbrev=False,
        description="strace census of sandboxed plugin syscalls; other arguments go to pytest",
    )
    parser.add_argument("--json", default="/tmp/sandchat-census.json", help="where to write the JSON result")
    parser.add_argument("--markdown", default=None, help="also write the markdown summary here")
    parser.add_argument("--trace", default="/tmp/sandchat-census.strace", help="where strace writes its trace")
    parser.add_argument("--from-trace", default=None, help="parse an existing trace instead of running pytest")
    parser.add_argument("--strace", default=shutil.which("strace") or "/usr/bin/strace")
    ours, pytest_args = parser.parse_known_args(argv)
    result: dict = {"kernel": platform.release()}
    try:
        result["strace_version"] = subprocess.run([ours.strace, "-V"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        result["strace_version"] = "?"
    trace = ours.from_trace or ours.trace
    if not ours.from_trace:
        selection = pytest_args or [p for p in DEFAULT_SELECTION if os.path.exists(p)]
        command = [
            ours.strace,
            "-f",
            "-q",
            "-X",
            "verbose",
            "-s",
            "0",
            "-o",
            trace,
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:xdist",
            "-p",
            "bench.census",
            *selection,
        ]  # one process: strace follows it
        result["command"] = command
        print("running:", " ".join(command), file=sys.stderr, flush=True)
        t0 = time.monotonic()
        proc = subprocess.run(command, stdout=subprocess.PIPE, text=True, errors="replace")
        sys.stderr.write(proc.stdout[-20000:])
        result["pytest_exit"] = proc.returncode
        result["pytest_summary"] = _pytest_summary(proc.stdout)
        result["pytest_failures"] = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
        result["run_seconds"] = round(time.monotonic() - t0, 1)
        with open(trace + ".run.json", "w") as f:  # so --from-trace can report the run again
            json.dump(result, f, indent=1)
    elif os.path.exists(trace + ".run.json"):
        with open(trace + ".run.json") as f:
            result.update(json.load(f))
    result.update(analyse(trace))
    with open(ours.json, "w") as f:
        json.dump(result, f, indent=1, sort_keys=False)
    text = markdown(result)
    if ours.markdown:
        with open(ours.markdown, "w") as f:
            f.write(text + "\n")
    print(text)
    print(f"\nJSON: {ours.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
