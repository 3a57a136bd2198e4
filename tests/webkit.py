"""The browser chat for tests: ``sandchat web`` as a real subprocess, raw HTTP to it, and a real headless Chromium.

- :class:`WebServer` runs ``python -m app web --no-browser --port 0`` with ``SANDCHAT_HOME``
  in the test's folder and ``tests/webplugins`` as a plugin folder, reads the URL it
  prints, and stops it with SIGINT (Ctrl-C) as a user would.
- :meth:`WebServer.request` speaks HTTP with ``http.client``: every header is the test's.
- :func:`chromium` launches Debian's ``/usr/bin/chromium`` through Playwright (no browser
  download) with a fresh profile.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.helpers import SANDCHAT, TESTS, cli_env, processes, wait_until

__all__ = ["CHROMIUM", "WEB_PLUGINS", "WebServer", "chromium", "have_chromium", "have_web_extra"]

WEB_PLUGINS = TESTS / "webplugins"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
#: Deadlines for the test plugins that hang, short enough for a test (config.toml's [plugins.NAME]).
CONFIG = "[plugins.hanger]\nfirst_chunk = 3\ntotal = 5\n"


def have_web_extra() -> bool:
    try:
        import markdown_it  # noqa: F401
        import nh3  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return False
    return True


def have_chromium() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return os.access(CHROMIUM, os.X_OK) or shutil.which("chromium") is not None


class WebServer:
    """One ``sandchat web`` process; ``url`` is what it printed (token included), ``origin`` its own origin."""

    def __init__(self, home: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> None:
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(CONFIG)
        command = [*SANDCHAT, "web", "--no-browser", "--port", "0", "--plugins-dir", str(WEB_PLUGINS), *args]
        # stderr goes to a file, not a pipe: a pipe nobody reads would block a server that logs much
        self.stderr_file = home / "web.stderr"
        with self.stderr_file.open("wb") as errors:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors,
                                            env=cli_env(home, **(env or {})))  # fmt: skip
        self.home = home
        self._seen = b""  # its stdout not yet read as lines
        self.url = self._printed_url(timeout)
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname or "", parts.port or 0
        self.origin = f"http://{parts.netloc}"
        self.token = parts.query.removeprefix("token=")
        self.cookie = f"sandchat_{self.port}={self.token}"

    def _printed_line(self, deadline: float) -> str:
        """The next line the process prints on stdout, waited for until ``deadline``."""
        assert self.process.stdout is not None
        while b"\n" not in self._seen:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, left))
            if not ready:
                self.stop()
                raise AssertionError(f"sandchat web printed no more lines in time; stdout so far {self._seen!r}; stderr: {self.stderr()}")
            piece = os.read(self.process.stdout.fileno(), 4096)
            if not piece:
                raise AssertionError(f"sandchat web ended early; stdout {self._seen!r}; stderr: {self.stderr()}")
            self._seen += piece
        line, self._seen = self._seen.split(b"\n", 1)
        return line.decode()

    def _printed_url(self, timeout: float) -> str:
        """The address from the line ``sandchat web: URL``; then, so no test sees plugins still starting, the survey's line."""
        deadline = time.monotonic() + timeout
        line = self._printed_line(deadline)
        assert line.startswith("sandchat web: http://127.0.0.1:"), line
        checked = self._printed_line(deadline)
        assert checked.startswith("sandchat web: ") and "checked" in checked, checked
        return line.removeprefix("sandchat web: ")

    def request(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, body: bytes | None = None, cookie: bool = True
    ) -> tuple[int, dict[str, str], bytes]:
        """One raw HTTP request: status, headers (lower-case names), body. The cookie is sent unless ``cookie=False``."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = {"Host": f"127.0.0.1:{self.port}", **({"Cookie": self.cookie} if cookie else {}), **(headers or {})}
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in sent.items():
                connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(body or b"")))
            connection.endheaders(body)
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def post(self, path: str, data: Any, **headers: str) -> tuple[int, dict[str, str], bytes]:
        """A POST as the page makes it: JSON, its own Origin."""
        sent = {"Origin": self.origin, "Content-Type": "application/json", **headers}
        return self.request("POST", path, headers=sent, body=json.dumps(data).encode())

    def stderr(self) -> str:
        """What it has written on stderr so far."""
        return self.stderr_file.read_bytes().decode(errors="replace")

    def stop(self) -> int:
        """Ctrl-C, as a user would; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> WebServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def chromium(profile: Path, *args: str) -> Iterator[Any]:
    """A Playwright browser: Debian's Chromium, headless, a fresh user-data-dir at ``profile``, ``args`` added."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *args], viewport={"width": 1280, "height": 800}
        )
        try:
            yield context
        finally:
            context.close()
            _reap_browser_orphans()


def _reap_browser_orphans(timeout: float = 20) -> None:
    """Wait for Chromium's helpers (crashpad, zygotes) to end, and reap those that became ours.

    They outlive the browser's main process for a moment; when an earlier test in this
    process made it a child subreaper (as a PluginManager does), they re-parent to this
    process, and an unreaped one is a leftover the leak check rightly blames.
    """
    me = os.getpid()

    def none_left() -> bool:
        left = False
        for pid, fields, _ in processes():
            if int(fields[1]) != me or not _comm(pid).startswith("chrom"):
                continue
            if fields[0] == b"Z":
                os.waitpid(pid, os.WNOHANG)
            else:
                left = True
        return not left

    wait_until(none_left, timeout, "Chromium's helper processes to end")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
