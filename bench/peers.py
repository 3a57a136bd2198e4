"""Figure 8: the same tiny call over the transports a plugin system would otherwise use.

The call is "count the tokens of 'hello world'" answered by a second Python process:

* JSON lines over the child's stdin/stdout (text mode, a flush per message);
* ``multiprocessing.Pipe`` to a ``spawn`` child;
* the MCP python SDK: a stdio server with a ``count_tokens`` tool, called with
  ``ClientSession.call_tool`` (only when ``mcp`` is installed: ``pip install -e '.[bench]'``).

Each is measured in blocks interleaved with sandchat's own call (the trivial plugin
under the full sandbox). Targets: at least 3x faster than JSON lines and 50x faster
than the MCP SDK; multiprocessing.Pipe is shown for reference.

Two floors are shown for reference too, so the JSON-lines target can be judged in the
same run: a raw 1-byte pipe ping-pong (no encoding at all), and a bare msgpack-RPC
over pipes: the same request and reply as sandchat's, packed and unpacked with
msgpack, with no shape check, id match, deadline, lock or sandbox.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import subprocess
import time
from typing import Any

from bench.common import PYTHON, PipePeer, RawPeer, Row, Settings, Stat, Workspace, sandbox_note

SHORT_TEXT = "hello world"

JSON_CHILD = r"""
import json, sys
out = sys.stdout
for line in sys.stdin:
    request = json.loads(line)
    out.write(json.dumps({"id": request["id"], "result": (len(request["params"]["text"]) + 3) // 4}) + "\n")
    out.flush()
"""

BARE_MSGPACK_CHILD = r"""
import os, sys, msgpack
r, w = int(sys.argv[1]), int(sys.argv[2])
unpackb, pack = msgpack.unpackb, msgpack.Packer().pack
while True:
    data = os.read(r, 65536)
    if not data:
        break
    request = unpackb(data)
    os.write(w, pack([1, request[1], None, (len(request[3]["text"]) + 3) // 4]))
"""

MCP_SERVER = r"""
try:
    from mcp.server.mcpserver import MCPServer
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as MCPServer

server = MCPServer("sandchat-bench")


@server.tool()
def count_tokens(text: str) -> int:
    return (len(text) + 3) // 4


server.run()
"""


def mcp_available() -> bool:
    try:
        import mcp.client.stdio  # noqa: F401
    except ImportError:
        return False
    return True


class JsonLines:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([PYTHON, "-I", "-c", JSON_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.next_id = 0

    def call(self) -> int:
        self.next_id += 1
        stdin = self.proc.stdin
        stdin.write(json.dumps({"id": self.next_id, "method": "count_tokens", "params": {"text": SHORT_TEXT}}) + "\n")  # type: ignore[union-attr]
        stdin.flush()  # type: ignore[union-attr]
        reply = json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]
        if reply["id"] != self.next_id:
            raise RuntimeError("JSON lines peer answered out of order")
        return reply["result"]

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait(5)


class BareMsgpack(PipePeer):
    """The floor of any msgpack-RPC here: sandchat's messages, no checks, over two raw pipes."""

    def __init__(self) -> None:
        import msgpack

        super().__init__(BARE_MSGPACK_CHILD)
        self.pack, self.unpackb = msgpack.Packer().pack, msgpack.unpackb
        self.next_id = 0

    def call(self) -> int:
        self.next_id += 1
        os.write(self.w, self.pack([0, self.next_id, "count_tokens", {"text": SHORT_TEXT}]))
        return self.unpackb(os.read(self.r, 65536))[3]


def _mp_serve(conn: Any) -> None:
    while True:
        try:
            method, params = conn.recv()
        except EOFError:
            return
        conn.send((len(params["text"]) + 3) // 4)


class MpPipe:
    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_mp_serve, args=(child,), daemon=True)
        self.proc.start()
        child.close()

    def call(self) -> int:
        self.conn.send(("count_tokens", {"text": SHORT_TEXT}))
        return self.conn.recv()

    def close(self) -> None:
        self.conn.close()
        self.proc.join(5)


def _timed_block(fn: Any, count: int, out: list[float]) -> None:
    clock = time.perf_counter_ns
    for _ in range(count):
        t0 = clock()
        fn()
        out.append((clock() - t0) / 1000)


async def _measure(settings: Settings, client: Any) -> dict[str, list[float]]:
    reps = settings.pick(4, 20)
    block = settings.pick(100, 400)
    mcp_block = settings.pick(20, 50)
    samples: dict[str, list[float]] = {"ours": [], "json": [], "mp": [], "mcp": [], "bare": [], "raw": []}
    json_peer, mp_peer, bare_peer, raw_peer = JsonLines(), MpPipe(), BareMsgpack(), RawPeer("ping")
    expected = client.count_tokens(SHORT_TEXT)
    if json_peer.call() != expected or mp_peer.call() != expected or bare_peer.call() != expected:
        raise RuntimeError("a peer counted differently")

    async def rounds(mcp_call: Any) -> None:
        for rep in range(reps + 1):
            keep = rep > 0  # the first round is a warm-up
            for name, fn, count in (("json", json_peer.call, block), ("ours", lambda: client.count_tokens(SHORT_TEXT), block),
                                    ("mp", mp_peer.call, block), ("bare", bare_peer.call, block)):  # fmt: skip
                _timed_block(fn, count, samples[name] if keep else [])
            (samples["raw"] if keep else []).extend(raw_peer.ping_samples(block))
            if mcp_call is not None:
                out = samples["mcp"] if keep else []
                for _ in range(mcp_block):
                    t0 = time.perf_counter_ns()
                    await mcp_call()
                    out.append((time.perf_counter_ns() - t0) / 1000)

    try:
        if not mcp_available():
            await rounds(None)
            return samples
        import os

        from mcp.client.session import ClientSession
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(command=PYTHON, args=["-c", MCP_SERVER])
        with open(os.devnull, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
                await session.initialize()

                async def mcp_call() -> None:
                    result = await session.call_tool("count_tokens", {"text": SHORT_TEXT})
                    if getattr(result, "is_error", getattr(result, "isError", False)):
                        raise RuntimeError(f"MCP tool call failed: {result}")

                await rounds(mcp_call)
    finally:
        for peer in (json_peer, mp_peer, bare_peer, raw_peer):
            peer.close()
    return samples


def run(settings: Settings, placement: str) -> list[Row]:
    with Workspace() as ws:
        client = ws.client()
        samples = asyncio.run(_measure(settings, client))
        note = sandbox_note(client)
    ours = Stat.of(samples["ours"])
    rows = []
    for key, name, target in (("json", "JSON lines over stdio", 3.0), ("mcp", "MCP python SDK stdio call_tool", 50.0),
                              ("mp", "multiprocessing.Pipe", None), ("bare", "floor: bare msgpack-RPC, no checks", None),
                              ("raw", "floor: raw 1-byte pipe ping-pong", None)):  # fmt: skip
        peer = Stat.of(samples[key])
        if not peer.n:
            rows.append(Row("8", f"speed-up vs {name}", "µs", ours, name, None, None, ">=", target,
                            "skipped: the MCP SDK is not installed (pip install -e '.[bench]')", placement))  # fmt: skip
            continue
        rows.append(Row("8", f"speed-up vs {name}", "µs", ours, name, peer, peer.median / ours.median,
                        ">=" if target else "", target, note, placement))  # fmt: skip
    return rows
