"""``sandchat web``: the chat in a browser, served on loopback behind a per-run token."""

from __future__ import annotations

import argparse
import ipaddress
import socket
from collections.abc import Mapping

from app.context import Context
from app.exits import EXIT_OK, EXIT_USAGE

__all__ = ["web"]

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: any free port), bound before the server starts so its port is known."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _has_browser(environ: Mapping[str, str]) -> bool:
    """Whether a browser can be opened: a display, or a BROWSER the user named."""
    return any(environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"))


def web(args: argparse.Namespace, context: Context) -> int:
    try:
        import uvicorn

        from app.web.security import MAX_HEADER_BYTES, GateConfig, new_token
        from app.web.server import build_app
        from app.web.webchat import WebChat, WebConfig
    except ImportError as exc:
        context.output.error(f"sandchat web needs the [web] extra ({exc.name} is missing): pip install -e '.[web]'")
        return EXIT_USAGE
    host = args.host
    if not _is_loopback(host):
        context.output.notice(f"warning: serving on {host}, not loopback: anyone who can reach it and learns the URL can chat as you")
    try:
        sock = _listen(host, args.port)
    except OSError as exc:
        context.output.error(f"cannot listen on {host}:{args.port}: {exc.strerror or exc}")
        return EXIT_USAGE
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    hosts = ("127.0.0.1", "localhost", "[::1]") if _is_loopback(host) else (shown,)
    gate = GateConfig(new_token(), port, hosts)
    name = context.plugin_name(getattr(args, "plugin", None))
    chat = WebChat(context.manager, WebConfig(name, args.max_tokens, args.temperature))
    chat.core.conversation.system = args.system or ""
    chat.core.watch_liveness()
    chat.core.watch_plugins()
    url = f"http://{shown}:{port}/?token={gate.token}"
    context.output.write(f"sandchat web: {url}\n")
    context.output.stdout.flush()

    def checked(count: int) -> None:  # on the survey's thread: one line, then the terminal is quiet
        context.output.write(f"sandchat web: {count} plugin{'s' if count != 1 else ''} checked; the page lists their states\n")
        context.output.stdout.flush()

    chat.survey(checked)  # after the address: the page is usable at once, the states fill in
    if not args.no_browser and _has_browser(context.settings.environ):
        import webbrowser

        webbrowser.open(url)
    # a reply still streaming when the user presses Ctrl-C gets 3 s to end, not forever
    config = uvicorn.Config(
        build_app(chat, gate),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=3,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        chat.close()
        sock.close()
    return EXIT_OK
