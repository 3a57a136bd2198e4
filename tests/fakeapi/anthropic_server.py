"""Fake Anthropic Messages API: ``POST /v1/messages`` (JSON and SSE) and ``/v1/messages/count_tokens``.

Wire format as documented by Anthropic and as the installed ``anthropic`` 2.x SDK parses it:

* Auth: ``x-api-key: <key>`` or ``Authorization: Bearer <key>`` (SDK 2.x sends the latter).
* ``anthropic-version`` is required; ``2023-06-01`` and ``2026-10-21`` are known. Under
  ``2026-10-21`` the sampling parameters (``temperature``, ``top_p``, ``top_k``) are gone
  and any of them is a 400, as the API documents (the message wording here is ours).
* Streaming events, in order: ``message_start``, ``content_block_start``, ``ping``,
  ``content_block_delta`` x N (``text_delta``), ``content_block_stop``, ``message_delta``
  (``stop_reason`` + ``usage``), ``message_stop``; each ``event: X\\ndata: {json}\\n\\n``.
  With ``thinking=...`` a thinking block (``thinking_delta``, ``signature_delta``) comes
  first, as adaptive-thinking models send it.
* Under ``2023-06-01`` the sampling parameters still pass, except for the models that
  deprecated them (Claude 4.7 and later, :data:`SAMPLING_DEPRECATED`): a non-default
  ``temperature``, or any ``top_p``/``top_k``, is a 400 "... is deprecated for this model."
* ``GET /v1/models`` (authenticated like every endpoint, ``limit`` 1..1000, default 20):
  the cheap, token-free request clients use to check a key.
* Errors: ``{"type": "error", "error": {"type": ..., "message": ...}}`` with the real
  statuses (401, 403, 404, 429 + ``retry-after``, 500, 529, 400...), every response
  carrying a ``request-id``; a queued error with ``mid_stream=True`` is sent the way the
  API reports overload during a stream: HTTP 200, then an ``event: error``.

Token counts are fake but deterministic: :func:`fake_token_count`.

Broken streams, for clients that must not fail silently (:meth:`FakeAnthropicServer.queue_stream_ending`):
after ``after_chunks`` text deltas the next stream either ends its body cleanly without
``message_delta``/``message_stop`` ("cut"), drops the connection mid-body ("hangup"), or
sends an ``event: error`` ("error").
"""

from __future__ import annotations

import itertools
import json
import math
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

from . import (
    FakeServer,
    JsonReply,
    QueuedError,
    RecordedRequest,
    StreamReply,
    split_words,
    sse_events,
)

__all__ = ["ERROR_TYPES", "KNOWN_VERSIONS", "SAMPLING_DEPRECATED", "FakeAnthropicServer", "StreamEnding", "fake_token_count"]

KNOWN_VERSIONS = ("2023-06-01", "2026-10-21")
_SAMPLING_REMOVED_IN = "2026-10-21"
_SAMPLING_PARAMS = ("temperature", "top_p", "top_k")
#: Models that reject sampling parameters even under 2023-06-01 (Claude 4.7 and later).
SAMPLING_DEPRECATED = (
    "claude-opus-4-7", "claude-opus-4-8", "claude-opus-5", "claude-opus-5-5",
    "claude-sonnet-5", "claude-sonnet-5-5", "claude-haiku-5-5",
)  # fmt: skip

#: The API's error type for each HTTP status it uses.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_DEFAULT_MESSAGES = {
    400: "Invalid request",
    401: "invalid x-api-key",
    403: "Your API key does not have permission to use the specified resource.",
    404: "Not found",
    429: "Number of requests has exceeded your per-minute rate limit",
    500: "Internal server error",
    529: "Overloaded",
}


def fake_token_count(body: Mapping[str, Any]) -> int:
    """Deterministic stand-in for a tokenizer: 1 token per 4 characters of text, plus 3 per message."""
    texts: list[str] = []
    system = body.get("system")
    if isinstance(system, str):
        texts.append(system)
    elif isinstance(system, list):
        texts.extend(str(block.get("text", "")) for block in system if isinstance(block, dict))
    for message in body.get("messages") or []:
        texts.extend(_message_texts(message))
    return sum(math.ceil(len(text) / 4) for text in texts) + 3 * len(body.get("messages") or [])


def _message_texts(message: Any) -> list[str]:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [str(block.get("text", "")) for block in content if isinstance(block, dict)]
    return []


@dataclass(frozen=True)
class StreamEnding:
    """How the next streamed reply ends instead of ``message_delta`` + ``message_stop``."""

    ending: Literal["cut", "hangup", "error"]
    after_chunks: int = 2  # text deltas sent first
    error_type: str = "api_error"  # for "error"
    message: str = "Internal server error"


class _Hangup(ConnectionResetError):
    """Raised inside a stream's events: FakeServer._handle then closes the connection mid-body."""


class FakeAnthropicServer(FakeServer):
    """A scriptable Anthropic API; see the module docstring for the wire format.

    ``thinking``: when set, replies start with a thinking block holding this text.
    ``known_models``: when set, other models get a 404 ``not_found_error``.
    ``token_count``: fixed ``input_tokens`` for count_tokens (default :func:`fake_token_count`).
    ``stop_reason``: what replies end with (``"end_turn"``; e.g. ``"max_tokens"``, ``"refusal"``).
    """

    def __init__(
        self,
        *,
        thinking: str | None = None,
        known_models: tuple[str, ...] | None = None,
        token_count: int | None = None,
        stop_reason: str = "end_turn",
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.thinking = thinking
        self.known_models = known_models
        self.token_count = token_count
        self.stop_reason = stop_reason
        self._ids = itertools.count(1)
        self._endings: deque[StreamEnding] = deque()
        self._endings_lock = threading.Lock()

    def queue_stream_ending(self, ending: Literal["cut", "hangup", "error"], n: int = 1, **options: Any) -> None:
        """End the next ``n`` streamed replies early; options as in :class:`StreamEnding`."""
        with self._endings_lock:
            self._endings.extend(StreamEnding(ending, **options) for _ in range(n))

    def _take_ending(self) -> StreamEnding | None:
        with self._endings_lock:
            return self._endings.popleft() if self._endings else None

    # -- routing -----------------------------------------------------------------------

    def route(self, request: RecordedRequest) -> JsonReply | StreamReply:
        if request.method == "POST" and request.path in ("/v1/messages", "/v1/messages/count_tokens"):
            problem = self._check_headers(request) or self._check_body(request)
            if problem is not None:
                return problem
            if request.path == "/v1/messages/count_tokens":
                count = self.token_count if self.token_count is not None else fake_token_count(request.body)
                return self._json(200, {"input_tokens": count})
            if request.body.get("stream") is True:
                return StreamReply(self._message_events(request.body, self._take_ending()), self._ids_header())
            return self._json(200, self._message(request.body))
        if request.method == "GET" and request.path == "/v1/models":
            return self._check_headers(request) or self._models(request.query)
        return self._error(404, "not_found_error", f"{request.method} {request.path} not found")

    def error_reply(self, error: QueuedError, request: RecordedRequest) -> JsonReply | StreamReply:
        error_type = error.error_type or ERROR_TYPES.get(error.status, "api_error")
        message = error.message or _DEFAULT_MESSAGES.get(error.status, error_type)
        streaming = isinstance(request.body, dict) and request.body.get("stream") is True
        if error.mid_stream and streaming:
            return StreamReply(self._events_then_error(request.body, error_type, message), self._ids_header())
        headers = dict(error.headers)
        if error.retry_after is not None:
            headers["retry-after"] = _format_seconds(error.retry_after)
        return self._error(error.status, error_type, message, headers)

    # -- validation --------------------------------------------------------------------

    def _check_headers(self, request: RecordedRequest) -> JsonReply | None:
        if self.api_key is not None:
            bearer = request.headers.get("authorization", "")
            key = request.headers.get("x-api-key") or (bearer[7:] if bearer.lower().startswith("bearer ") else None)
            if key is None:
                return self._error(401, "authentication_error", "x-api-key header is required")
            if key != self.api_key:
                return self._error(401, "authentication_error", "invalid x-api-key")
        version = request.headers.get("anthropic-version")
        if version is None:
            return self._error(400, "invalid_request_error", "anthropic-version: header is required")
        if version not in KNOWN_VERSIONS:
            return self._error(400, "invalid_request_error", f"anthropic-version: unknown version {version!r}")
        return None

    def _check_body(self, request: RecordedRequest) -> JsonReply | None:
        body = request.body
        if not isinstance(body, dict):
            return self._error(400, "invalid_request_error", "request body must be a JSON object")
        counting = request.path.endswith("/count_tokens")
        required = ("model", "messages") if counting else ("model", "messages", "max_tokens")
        for name in required:
            if name not in body:
                return self._error(400, "invalid_request_error", f"{name}: Field required")
        if not counting and (not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1):
            return self._error(400, "invalid_request_error", "max_tokens: must be a positive integer")
        return self._check_sampling(body, request.headers.get("anthropic-version")) or self._check_messages(body)

    def _check_sampling(self, body: Mapping[str, Any], version: str | None) -> JsonReply | None:
        for name in _SAMPLING_PARAMS:
            if name not in body:
                continue
            if version == _SAMPLING_REMOVED_IN:
                return self._error(400, "invalid_request_error", f"{name}: not supported in API version {_SAMPLING_REMOVED_IN}")
            default = name == "temperature" and body[name] == 1  # the default alone still passes
            if body.get("model") in SAMPLING_DEPRECATED and not default:
                return self._error(400, "invalid_request_error", f"`{name}` is deprecated for this model.")
        return None

    def _check_messages(self, body: Mapping[str, Any]) -> JsonReply | None:
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            return self._error(400, "invalid_request_error", "messages: at least one message is required")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                return self._error(400, "invalid_request_error", f"messages.{index}.role: must be user or assistant")
            if not any(text for text in _message_texts(message)):
                return self._error(400, "invalid_request_error", f"messages.{index}: content must be non-empty")
        if self.known_models is not None and body["model"] not in self.known_models:
            return self._error(404, "not_found_error", f"model: {body['model']}")
        return None

    # -- responses ---------------------------------------------------------------------

    def _message(self, body: Mapping[str, Any]) -> dict[str, Any]:
        text = self.reply_text(body)
        content: list[dict[str, Any]] = []
        if self.thinking is not None:
            content.append({"type": "thinking", "thinking": self.thinking, "signature": "c2lnbmF0dXJl"})
        content.append({"type": "text", "text": text})
        message = self._skeleton(body)
        message.update(content=content, stop_reason=self.stop_reason)
        message["usage"]["output_tokens"] = len(split_words(text))
        return message

    def _skeleton(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": f"msg_fake{next(self._ids):06d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": fake_token_count(body), "output_tokens": 1},
        }

    def _message_events(self, body: Mapping[str, Any], ending: StreamEnding | None = None) -> Iterator[bytes]:
        text_chunks = split_words(self.reply_text(body))
        yield from _sse("message_start", message=self._skeleton(body))
        index = 0
        if self.thinking is not None:
            yield from self._thinking_events()
            index = 1
        yield from _sse("content_block_start", index=index, content_block={"type": "text", "text": ""})
        if self.thinking is None:
            yield from _sse("ping")  # the API pings after the first content_block_start
        for number, chunk in enumerate(text_chunks):
            if ending is not None and number == ending.after_chunks:
                yield from self._early_end(ending)
                return
            yield from _sse("content_block_delta", index=index, delta={"type": "text_delta", "text": chunk})
        if ending is not None:  # a reply shorter than after_chunks still ends early
            yield from self._early_end(ending)
            return
        yield from _sse("content_block_stop", index=index)
        yield from _sse(
            "message_delta",
            delta={"stop_reason": self.stop_reason, "stop_sequence": None},
            usage={"output_tokens": len(text_chunks)},
        )
        yield from _sse("message_stop")

    def _early_end(self, ending: StreamEnding) -> Iterator[bytes]:
        if ending.ending == "error":
            yield from _sse("error", error={"type": ending.error_type, "message": ending.message})
        elif ending.ending == "hangup":
            raise _Hangup("the fake server drops the connection mid-stream")
        # "cut": nothing more; the body ends cleanly (the chunked terminator), no message_stop

    def _thinking_events(self) -> Iterator[bytes]:
        yield from _sse("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""})
        yield from _sse("ping")
        for chunk in split_words(self.thinking or ""):
            yield from _sse("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": chunk})
        yield from _sse("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "c2ln"})
        yield from _sse("content_block_stop", index=0)

    def _events_then_error(self, body: Mapping[str, Any], error_type: str, message: str) -> Iterator[bytes]:
        yield from _sse("message_start", message=self._skeleton(body))
        yield from _sse("ping")
        yield from _sse("error", error={"type": error_type, "message": message})

    def _models(self, query: str) -> JsonReply:
        """``GET /v1/models``: one page of ``limit`` models (default 20, 1 to 1000)."""
        values = parse_qs(query).get("limit", ["20"])
        try:
            limit = int(values[-1])
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            return self._error(400, "invalid_request_error", "limit: Input should be between 1 and 1000")
        ids = list(self.known_models or ("claude-sonnet-5-5",))
        page = ids[:limit]
        data = [{"type": "model", "id": model, "display_name": model, "created_at": "2026-01-01T00:00:00Z"} for model in page]
        return self._json(200, {"data": data, "has_more": len(ids) > limit, "first_id": page[0], "last_id": page[-1]})

    def _ids_header(self) -> dict[str, str]:
        return {"request-id": f"req_fake{next(self._ids):06d}"}

    def _json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> JsonReply:
        return JsonReply(status, body, {**self._ids_header(), **(headers or {})})

    def _error(self, status: int, error_type: str, message: str, headers: Mapping[str, str] | None = None) -> JsonReply:
        body = {"type": "error", "error": {"type": error_type, "message": message}}
        return self._json(status, body, headers)


def _sse(event: str, **payload: Any) -> Iterator[bytes]:
    """One Anthropic SSE event: the ``type`` field repeats the event name, as the API does."""
    return sse_events([(event, json.dumps({"type": event, **payload}))])


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)
