"""``sandchat agent``: ``status`` shows the agent and its warm plugins, ``stop`` ends it; ``serve`` (hidden) is the agent.

``stop`` asks politely, then (if the process is still there after a bounded wait) sends
SIGTERM, then SIGKILL; stopping an agent that is not running is no error. The pid comes
from the socket's peer credentials, so even an agent that no longer answers (or speaks
another version) is found and ended.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from typing import Any

import runner
from app.agent.client import AgentClient
from app.agent.errors import AgentError
from app.agent.paths import AgentPaths
from app.agent.server import Agent, AlreadyRunning, read_warm_file
from app.commands.warm import agent_paths
from app.context import Context
from app.exits import EXIT_OK, EXIT_PLUGIN
from app.render import table
from app.version import build

__all__ = ["run", "serve"]

STOP_GRACE = 5.0  # each step of a stop: the agent closes its plugins (each within its stop grace) before it exits
_LOG_LIMIT = 1 << 20  # the agent's log is begun afresh past this, at a start


def run(args: argparse.Namespace, context: Context) -> int:
    paths = agent_paths(context.settings)
    client = AgentClient(paths, build())
    return _stop(client, context) if args.agent_command == "stop" else _status(client, args, context)


def _status(client: AgentClient, args: argparse.Namespace, context: Context) -> int:
    reply = client.ask({"op": "status"})
    if reply is None or reply.get("type") != "status":
        pid = client.pid()
        doc: dict[str, Any] = {"running": pid is not None, "answering": False, "pid": pid, "socket": str(client.paths.socket)}
        if args.json:
            context.output.write(json.dumps(doc) + "\n")
        elif pid is None:
            context.output.write(f"agent: not running (socket {client.paths.socket})\n")
        else:
            context.output.write(f"agent: pid {pid} holds the socket but does not answer this build; sandchat agent stop ends it\n")
        return EXIT_OK
    doc = {"running": True, "answering": True, "socket": str(client.paths.socket), **{k: v for k, v in reply.items() if k != "type"}}
    if args.json:
        context.output.write(json.dumps(doc) + "\n")
        return EXIT_OK
    out = context.output
    out.write(f"agent: pid {doc['pid']}, up {_seconds(doc.get('uptime'))}, exits after {_seconds(doc.get('idle'))} idle\n")
    forker = doc.get("forker")
    if isinstance(forker, dict):
        state = "ready" if forker.get("ready") else "loading"
        out.write(f"forker: pid {forker.get('pid')}, {state} (prompt and tokens start from its loaded modules)\n")
    plugins = doc.get("plugins") or []
    if not plugins:
        out.write("no warm plugins\n")
        return EXIT_OK
    rows = [(p.get("name"), p.get("state"), p.get("pid") or "-", _seconds(p.get("uptime")), p.get("calls", 0)) for p in plugins]
    out.write(table(rows, ("PLUGIN", "STATE", "PID", "UPTIME", "CALLS")) + "\n")
    return EXIT_OK


def _seconds(value: Any) -> str:
    return f"{value:.1f}s" if isinstance(value, (int, float)) else "-"


def _stop(client: AgentClient, context: Context) -> int:
    pid = client.pid()
    if pid is None:
        context.output.notice("no agent is running")
        return EXIT_OK
    client.ask({"op": "stop"})  # polite: it closes its plugins and removes its socket; an old or hung one ignores it
    how = runner.stop_detached(pid, STOP_GRACE)
    if how == "alive":
        context.output.error(f"the agent (pid {pid}) did not end")
        return EXIT_PLUGIN
    context.output.notice(f"stopped the agent (pid {pid})" + ("" if how == "exited" else f": it had to be {how}"))
    return EXIT_OK


def serve(args: argparse.Namespace) -> int:
    """The agent itself, until stopped or idle; a second one for the same directory exits at once."""
    paths = AgentPaths(Path(args.dir).absolute())
    agent = Agent(paths, build(), args.idle)
    warm = read_warm_file(Path(args.warm)) if args.warm else None
    try:
        with agent.listening():
            _begin_log(paths)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, lambda *_: agent.stop())
            if warm is not None:
                threading.Thread(target=agent.warm, args=(warm,), name="agent-warm", daemon=True).start()
            agent.serve()
    except AlreadyRunning:
        return EXIT_OK  # another starter won: the next command uses that one
    except AgentError as exc:
        print(f"agent: {exc}", flush=True)
        return EXIT_PLUGIN
    return EXIT_OK


def _begin_log(paths: AgentPaths) -> None:
    try:
        if paths.log.stat().st_size > _LOG_LIMIT:
            paths.log.write_bytes(b"")  # our own output is appended to it (O_APPEND): truncation is safe
    except OSError:
        pass
