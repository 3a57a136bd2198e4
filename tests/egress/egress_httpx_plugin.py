# /// plugin
# description = "httpx (the shipped SDKs' HTTP stack) through the network broker: async GET, a streamed reply, sync GET, a refusal."
# ///
"""user_message: JSON {"port": P} of an HTTP server on loopback, granted as localhost:P.

Answers JSON: ``get`` and ``sync`` as [status, body], ``stream`` as the streamed lines,
``refused`` as [exception type, its cause chain] for vm:P, which is not granted.
"""
import asyncio
import json

import httpx2 as httpx  # the anthropic SDK's httpx, under the name this environment installs it

from llm_utils import LLMClient


def _causes(exc):
    seen = []
    while exc is not None:
        seen.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(seen)


async def _async(port):
    base = f"http://localhost:{port}"
    async with httpx.AsyncClient(timeout=5) as client:
        got = await client.get(base + "/hello")
        lines = []
        async with client.stream("GET", base + "/stream") as reply:
            async for line in reply.aiter_lines():
                lines.append(line)
        try:
            await client.get(f"http://vm:{port}/hello")
            refused = ["none", ""]
        except httpx.HTTPError as exc:
            refused = [type(exc).__name__, _causes(exc)]
    return {"get": [got.status_code, got.text], "stream": lines, "refused": refused}


class EgressHttpx(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        port = json.loads(user_message)["port"]
        said = asyncio.run(_async(port))
        with httpx.Client(timeout=5) as client:
            reply = client.get(f"http://localhost:{port}/hello")
            said["sync"] = [reply.status_code, reply.text]
        return json.dumps(said)

    def count_tokens(self, text):
        return len(text.split())
