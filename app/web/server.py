"""The browser chat's HTTP routes (Starlette), behind the gate: the page, its two files, and a JSON API.

``/`` is the page, ``/static/app.js`` and ``/static/app.css`` its only files (a fixed
table: no path from a request ever reaches the disk). The API takes and gives JSON
only, bodies up to 1 MiB:

* ``GET /api/plugins``, ``GET /api/state`` (current plugin, system prompt, messages),
  ``GET /api/conversations`` (from logs.db), ``GET /api/health`` (what ``plugins health``
  shows), ``GET /api/tokens`` (what ``/tokens`` shows);
* ``POST /api/chat {"text"}`` streams the reply as NDJSON (``app.web.webchat``);
  ``POST /api/stop``, ``/api/switch {"name"}``, ``/api/system {"text"}``, ``/api/new``,
  ``/api/open {"id"}``, ``/api/grant {"id", "yes"}``.

A request the API cannot take is one line of text with a 4xx status; whatever a plugin
does is at most a ``failure`` line in the reply, never an error of the server.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from app.web.security import MAX_BODY, Gate, GateConfig
from app.web.webchat import Busy, WebChat
from runner import clean_text

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["BadRequest", "build_app"]

STATIC = Path(__file__).resolve().parent / "static"
_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}
_MAX_TEXT = 200_000  # characters of one message or system prompt


class BadRequest(Exception):
    """A request the API cannot take: one line, with its status."""

    def __init__(self, line: str, status: int = 400) -> None:
        super().__init__(line)
        self.status = status


async def _body(request: Request) -> dict[str, Any]:
    """The request's JSON object, read up to the limit; anything else is a :class:`BadRequest`."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise BadRequest("the API takes JSON only (Content-Type: application/json)", 415)
    data = b""
    async for piece in request.stream():
        data += piece
        if len(data) > MAX_BODY:
            raise BadRequest(f"a request body over {MAX_BODY} bytes", 413)
    try:
        value = json.loads(data or b"{}")
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the parser goes
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest("the request body must be a JSON object")
    try:  # JSON may spell a lone surrogate (\\ud800), which no UTF-8 text, log or page can hold
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise BadRequest("the request body holds text that is not valid Unicode (a lone surrogate)") from None
    return value


def _text(body: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = body.get(key, None if required else "")
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise BadRequest(f"{key!r} must be a string of at most {_MAX_TEXT} characters")
    return value


def _events(told: list[dict[str, Any]], **more: Any) -> JSONResponse:
    return JSONResponse({"events": told, **more})


def build_app(chat: WebChat, gate: GateConfig) -> Gate:
    """The whole application, the gate in front of it."""

    async def page(request: Request) -> Response:
        name, kind = _FILES[request.url.path]
        return Response((STATIC / name).read_bytes(), media_type=kind)

    async def plugins(request: Request) -> Response:
        rows = await run_in_threadpool(chat.plugins)
        return JSONResponse({"current": chat.core.plugin_name, "plugins": rows})

    async def state(request: Request) -> Response:
        core = chat.core
        return JSONResponse({"plugin": core.plugin_name, "system": core.conversation.system, "messages": chat.messages()})

    async def conversations(request: Request) -> Response:
        found = await run_in_threadpool(chat.core.log.conversations)
        return JSONResponse({"conversations": [
            {"id": s.conversation, "first": s.first_prompt[:200], "exchanges": s.exchanges, "ts": s.last_ts} for s in found
        ]})  # fmt: skip

    async def health(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(_health, chat))

    async def tokens(request: Request) -> Response:
        text, failed = await run_in_threadpool(chat.core.token_report)
        return JSONResponse({"text": text, "failed": failed})

    async def reply(request: Request) -> Response:
        text = _text(await _body(request), "text")
        if not text.strip():
            raise BadRequest("an empty message")
        events = chat.reply(text)
        first = await anext(events)  # Busy is raised here, before any response begins

        async def lines() -> AsyncIterator[bytes]:
            yield (json.dumps(first) + "\n").encode()
            async for event in events:
                yield (json.dumps(event) + "\n").encode()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def stop(request: Request) -> Response:
        await _body(request)
        return JSONResponse({"stopped": chat.stop()})

    async def switch(request: Request) -> Response:
        name = _text(await _body(request), "name")
        switched, told = await run_in_threadpool(chat.switch, name)
        return _events(told, switched=switched, plugin=chat.core.plugin_name)

    async def system(request: Request) -> Response:
        text = _text(await _body(request), "text", required=False)
        return _events(await run_in_threadpool(chat.set_system, text))

    async def new(request: Request) -> Response:
        await _body(request)
        return _events(await run_in_threadpool(chat.new))

    async def reopen(request: Request) -> Response:
        told = await run_in_threadpool(chat.open, _text(await _body(request), "id"))
        if told is None:
            raise BadRequest("no logged conversation has that id", 404)
        return _events(told, messages=chat.messages(), system=chat.core.conversation.system)

    async def grant(request: Request) -> Response:
        body = await _body(request)
        if not chat.answer_grant(_text(body, "id"), body.get("yes") is True):
            raise BadRequest("no such grant offer (it was answered, or it expired)", 404)
        return JSONResponse({"answered": True})

    async def refused(request: Request, exc: Exception) -> Response:
        if isinstance(exc, Busy):
            return PlainTextResponse(f"{exc}\n", status_code=409)
        status = exc.status if isinstance(exc, BadRequest) else 400
        return PlainTextResponse(f"{exc}\n", status_code=status)

    async def unexpected(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(f"sandchat: unexpected {type(exc).__name__}; the server goes on\n", status_code=500)

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)  # the browser asks for one; the page has none

    routes = [Route(path, page, methods=["GET"]) for path in _FILES] + [
        Route("/favicon.ico", no_icon, methods=["GET"]),
        Route("/api/plugins", plugins, methods=["GET"]),
        Route("/api/state", state, methods=["GET"]),
        Route("/api/conversations", conversations, methods=["GET"]),
        Route("/api/health", health, methods=["GET"]),
        Route("/api/tokens", tokens, methods=["GET"]),
        Route("/api/chat", reply, methods=["POST"]),
        Route("/api/stop", stop, methods=["POST"]),
        Route("/api/switch", switch, methods=["POST"]),
        Route("/api/system", system, methods=["POST"]),
        Route("/api/new", new, methods=["POST"]),
        Route("/api/open", reopen, methods=["POST"]),
        Route("/api/grant", grant, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={BadRequest: refused, Busy: refused, Exception: unexpected})
    return Gate(_Contained(app), gate)


class _Contained:
    """Under the gate: an exception costs its request one line, never a traceback per request.

    Starlette has answered it (``unexpected``: a 500 line) before the exception reaches
    here. A client that leaves mid-body is ordinary (a closed tab) and says nothing;
    anything else is one line on stderr.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            return
        except Exception as exc:
            where = f"{scope.get('method', '')} {scope.get('path', '')}"
            what = clean_text(f"{where}: unexpected {type(exc).__name__}: {exc}", keep_newlines=False)
            print(f"sandchat web: {what[:300]}; the server goes on", file=sys.stderr, flush=True)


def _health(chat: WebChat) -> dict[str, Any]:
    """Probe every plugin as ``plugins health`` does; what it learns of readiness feeds the plugin list."""
    import runner
    from app.health import health_text, probe

    core = chat.core
    before = {name for name, handle in core.manager.handles().items() if handle.running}
    try:
        reports = [probe(core.manager, name) for name in core.manager.names()]
    finally:  # a plugin only the probe wanted does not stay up (as /health in the terminal)
        core.stop_started(before)
    for report in reports:
        if report["ready"] is not None:
            core.readiness[report["name"]] = runner.Readiness(bool(report["ready"]), report["not_ready"] or "", report["counting"] or "")
    return {"text": health_text(reports, as_json=False, width=110), "reports": reports}
