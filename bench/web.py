"""Figure 13: the browser chat's page load and first streamed chunk, beside raw HTTP and the terminal chat.

One real ``sandchat web`` (``python -m app web --no-browser --port 0``) serves the bench's
trivial plugin. Measured:

- 13: page load in Debian's headless Chromium (Playwright): from ``goto`` to the page's
  readiness signal (``body[data-ready]``: the script ran, plugins and state fetched),
  beside a raw HTTP ``GET /`` (http.client, the cookie sent) on the same server.
- 13b: first streamed chunk in Chromium: from Send's click to the first reply text in the
  page, timed inside the page (``performance.now`` and a MutationObserver), beside the
  terminal chat's core (``ChatCore.ask`` in this process to its first ``chunk``).
- 13c: first streamed chunk over raw HTTP: ``POST /api/chat`` to the first ``chunk`` line
  of its NDJSON stream, beside the same terminal figure.

Informational (no target): the page's costs are the browser's, and they are shown so a
change that makes them worse is seen. Skipped with a reason when the ``[web]`` extra or
Chromium is absent.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import PLUGIN_NAME, PYTHON, ROOT, TRIVIAL_PLUGIN, Row, Settings, Stat, interleave

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
MAX_TOKENS = 20  # the trivial plugin streams this many one-letter chunks

#: Runs in the page: click Send and resolve with the milliseconds until the new reply shows text.
FIRST_CHUNK_JS = """(text) => new Promise((resolve) => {
  const before = document.querySelectorAll('.msg.assistant .text').length;
  const observer = new MutationObserver(() => {
    const replies = document.querySelectorAll('.msg.assistant .text');
    if (replies.length > before && replies[replies.length - 1].textContent.length > 0) {
      observer.disconnect();
      resolve(performance.now() - start);
    }
  });
  observer.observe(document.body, {childList: true, subtree: true, characterData: true});
  document.getElementById('message').value = text;
  const start = performance.now();
  document.getElementById('send').click();
})"""


def _missing() -> str:
    try:
        import markdown_it  # noqa: F401
        import nh3  # noqa: F401
        import playwright  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        return f"skipped: {exc.name} is not installed (pip install -e '.[test]')"
    return "" if os.access(CHROMIUM, os.X_OK) else f"skipped: no {CHROMIUM} (apt-get install chromium)"


class _Server:
    """A ``sandchat web`` serving the trivial plugin from a scratch home; its URL, token and port."""

    def __init__(self, base: Path) -> None:
        plugins = base / "plugins"
        plugins.mkdir()
        (plugins / f"{PLUGIN_NAME}_plugin.py").write_text(TRIVIAL_PLUGIN)
        env = dict(os.environ, SANDCHAT_HOME=str(base / "home"))
        argv = [
            PYTHON,
            "-m",
            "app",
            "web",
            "--no-browser",
            "--port",
            "0",
            "--plugins-dir",
            str(plugins),
            "-p",
            PLUGIN_NAME,
            "--max-tokens",
            str(MAX_TOKENS),
        ]  # fmt: skip  (the shipped plugins are checked too, as on a user's page)
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.url = self._line().removeprefix("sandchat web: ")
        self._line()  # "N plugins checked": nothing is still starting
        parts = urlsplit(self.url)
        self.port = parts.port or 0
        self.origin = f"http://{parts.netloc}"
        self.cookie = f"sandchat_{self.port}={parts.query.removeprefix('token=')}"

    def _line(self) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 120)
        if not ready:
            raise RuntimeError("sandchat web printed nothing in 120 s")
        return self.process.stdout.readline().decode().strip()

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def headers(self, **more: str) -> dict[str, str]:
        return {"Host": f"127.0.0.1:{self.port}", "Cookie": self.cookie, **more}

    def close(self) -> None:
        self.process.send_signal(2)  # Ctrl-C, as a user would
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _raw_page(server: _Server) -> float:
    connection = server.connection()
    t0 = time.perf_counter()
    connection.request("GET", "/", headers=server.headers())
    response = connection.getresponse()
    response.read()
    elapsed = time.perf_counter() - t0
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"GET / answered {response.status}")
    return elapsed * 1e3


def _raw_first_chunk(server: _Server) -> float:
    connection = server.connection()
    body = json.dumps({"text": "hello"}).encode()
    t0 = time.perf_counter()
    connection.request("POST", "/api/chat", body, server.headers(Origin=server.origin, **{"Content-Type": "application/json"}))
    response = connection.getresponse()
    first = None
    for line in response:
        if first is None and json.loads(line).get("type") == "chunk":
            first = time.perf_counter() - t0
    connection.close()  # the whole stream read: the next turn may begin
    if first is None:
        raise RuntimeError(f"POST /api/chat streamed no chunk (status {response.status})")
    return first * 1e3


class _Recorder:
    """A front end for the chat core that notes when the first chunk came."""

    def __init__(self) -> None:
        self.first: float | None = None

    def chunk(self, text: str) -> None:
        if self.first is None and text:
            self.first = time.perf_counter()

    def __getattr__(self, name: str) -> Any:
        return lambda *args: False  # waiting, ended, aside, notice, failure, offer_grant: not measured


def _terminal_first_chunks(base: Path, reps: int) -> list[float]:
    """The terminal chat's core, in this process: ``ask`` to its first chunk, ``reps`` times."""
    from app.chatcore import ChatCore
    from app.manager import PluginManager

    times = []
    with PluginManager([base / "plugins"], home=base / "terminal-home") as manager:
        front = _Recorder()
        core = ChatCore(manager, front, PLUGIN_NAME, max_tokens=MAX_TOKENS, temperature=None)  # type: ignore[arg-type]
        core.ask("warm-up")  # the plugin's start is not the figure
        for _ in range(reps):
            front.first = None
            t0 = time.perf_counter()
            core.ask("hello")
            if front.first is None:
                raise RuntimeError("the chat core streamed no chunk")
            times.append((front.first - t0) * 1e3)
        core.close()
    return times


def _browser(server: _Server, reps: int) -> tuple[list[float], list[float]]:
    from playwright.sync_api import sync_playwright

    loads: list[float] = []
    chunks: list[float] = []
    profile = tempfile.mkdtemp(prefix="sandchat-bench-chromium-")
    try:
        with sync_playwright() as driver:
            context = driver.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = context.new_page()
            for i in range(reps + 1):  # the first round warms the browser's caches up: not kept
                t0 = time.perf_counter()
                page.goto(server.url)
                page.locator("body[data-ready='1']").wait_for(timeout=60_000)
                load = (time.perf_counter() - t0) * 1e3
                chunk = float(page.evaluate(FIRST_CHUNK_JS, "hello"))
                page.locator("#send:enabled").wait_for(timeout=60_000)  # the turn is over
                if i:
                    loads.append(load)
                    chunks.append(chunk)
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return loads, chunks


def run(settings: Settings, placement: str) -> list[Row]:
    why = _missing()
    names = ["page load in Chromium, to the page's ready signal", "first streamed chunk in Chromium, Send to text shown",
             "first streamed chunk over raw HTTP (POST /api/chat)"]  # fmt: skip
    empty = Stat(float("nan"), float("nan"), 0)
    if why:
        return [Row(f, n, "ms", empty, "", None, None, "", None, why, placement) for f, n in zip(("13", "13b", "13c"), names, strict=True)]
    reps = settings.pick(3, 15)
    base = Path(tempfile.mkdtemp(prefix="sandchat-bench-web-"))
    server = _Server(base)
    try:
        raw_pages: list[float] = []
        raw_chunks: list[float] = []
        interleave(reps + 1, lambda: raw_pages.append(_raw_page(server)), lambda: raw_chunks.append(_raw_first_chunk(server)))
        del raw_pages[0], raw_chunks[0]  # warm-up
        loads, chunks = _browser(server, reps)
    finally:
        server.close()
    terminal = Stat.of(_terminal_first_chunks(base, reps))
    shutil.rmtree(base, ignore_errors=True)
    raw_page, raw_chunk = Stat.of(raw_pages), Stat.of(raw_chunks)
    load, chunk = Stat.of(loads), Stat.of(chunks)
    return [
        Row("13", names[0], "ms", load, "raw HTTP GET /", raw_page, load.median / raw_page.median, "", None, "", placement),
        Row("13b", names[1], "ms", chunk, "terminal chat core", terminal, chunk.median / terminal.median, "", None, "", placement),
        Row("13c", names[2], "ms", raw_chunk, "terminal chat core", terminal, raw_chunk.median / terminal.median, "", None, "",
            placement),
    ]  # fmt: skip
