"""Fake OpenAI-compatible API: ``POST /v1/chat/completions`` (JSON and SSE) and ``GET /v1/models``.

Wire format as OpenAI documents it (and llama.cpp, vLLM and Ollama imitate):

* Auth (only when ``api_key`` is set): ``Authorization: Bearer <key>``.
* Non-streaming: a ``chat.completion`` object with ``choices[0].message.content``.
* Streaming: ``data: {chat.completion.chunk}\\n\\n`` lines: first a ``delta`` carrying the
  role, then one per content piece, then an empty ``delta`` with ``finish_reason``, an
  optional usage chunk (``stream_options.include_usage``), and ``data: [DONE]\\n\\n``.
* Errors: ``{"error": {"message", "type", "param", "code"}}`` with 400/401/404/429/500/503;
  ``retry-after`` when asked. A queued ``mid_stream`` error is sent as a ``data:`` line
  holding the error object, as vLLM and llama.cpp do when generation fails mid-way.
* ``reject_params``: parameters to refuse the way OpenAI's reasoning models do
  (``max_tokens`` → use ``max_completion_tokens``; a non-default ``temperature``).
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any, Iterator, Mapping

from . import (
    FakeServer,
    JsonReply,
    QueuedError,
    RecordedRequest,
    StreamReply,
    split_words,
    sse_events,
)

__all__ = ["FakeOpenAIServer"]

_CREATED = 1_790_000_000  # a fixed timestamp keeps responses reproducible

_DEFAULTS: dict[int, tuple[str, str | None, str]] = {  # status -> (type, code, message)
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Country not supported."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests per min (RPM). Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


class FakeOpenAIServer(FakeServer):
    """A scriptable OpenAI-compatible chat-completions server; see the module docstring.

    ``base_url`` includes the ``/v1`` prefix, as ``OPENAI_BASE_URL`` does.
    """

    def __init__(self, *, model: str = "fake-model", reject_params: tuple[str, ...] = (), **options: Any) -> None:
        options.setdefault("api_key", None)  # local servers usually run without a key
        super().__init__(**options)
        self.model = model
        self.reject_params = reject_params
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        return super().base_url + "/v1"

    # -- routing -----------------------------------------------------------------------

    def route(self, request: RecordedRequest) -> JsonReply | StreamReply:
        problem = self._check_auth(request)
        if problem is not None:
            return problem
        if request.method == "GET" and request.path == "/v1/models":
            model = {"id": self.model, "object": "model", "created": _CREATED, "owned_by": "fake"}
            return JsonReply(200, {"object": "list", "data": [model]})
        if request.method == "POST" and request.path == "/v1/chat/completions":
            problem = self._check_body(request.body)
            if problem is not None:
                return problem
            if request.body.get("stream") is True:
                return StreamReply(self._chunks(request.body))
            return JsonReply(200, self._completion(request.body))
        return _error(404, "invalid_request_error", None, f"Invalid URL ({request.method} {request.path})")

    def error_reply(self, error: QueuedError, request: RecordedRequest) -> JsonReply | StreamReply:
        error_type, code, message = _DEFAULTS.get(error.status, ("server_error", None, "Error."))
        error_type = error.error_type or error_type
        code = error.code if error.code is not None else code
        message = error.message or message
        streaming = isinstance(request.body, dict) and request.body.get("stream") is True
        if error.mid_stream and streaming:
            return StreamReply(self._chunks_then_error(request.body, error_type, code, message))
        headers = dict(error.headers)
        if error.retry_after is not None:
            headers["retry-after"] = str(int(error.retry_after)) if float(error.retry_after).is_integer() else str(error.retry_after)
        return _error(error.status, error_type, code, message, headers=headers)

    # -- validation --------------------------------------------------------------------

    def _check_auth(self, request: RecordedRequest) -> JsonReply | None:
        if self.api_key is None:
            return None
        header = request.headers.get("authorization", "")
        if not header:
            return _error(401, "invalid_request_error", None, "You didn't provide an API key.")
        if header != f"Bearer {self.api_key}":
            return _error(401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.")
        return None

    def _check_body(self, body: Any) -> JsonReply | None:
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", None, "We could not parse the JSON body of your request.")
        for name in ("model", "messages"):
            if name not in body:
                return _error(400, "invalid_request_error", None, f"Missing required parameter: '{name}'.", name)
        if not isinstance(body["messages"], list) or not body["messages"]:
            return _error(400, "invalid_request_error", "empty_array", "Invalid 'messages': empty array.", "messages")
        if "max_tokens" in self.reject_params and "max_tokens" in body:
            message = "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
            return _error(400, "invalid_request_error", "unsupported_parameter", message, "max_tokens")
        if "temperature" in self.reject_params and body.get("temperature", 1) != 1:
            message = (
                f"Unsupported value: 'temperature' does not support {body['temperature']} with this model. "
                "Only the default (1) value is supported."
            )
            return _error(400, "invalid_request_error", "unsupported_value", message, "temperature")
        return None

    # -- responses ---------------------------------------------------------------------

    def _completion(self, body: Mapping[str, Any]) -> dict[str, Any]:
        text = self.reply_text(body)
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }
        return {**self._envelope(body, "chat.completion"), "choices": [choice], "usage": _usage(body, text)}

    def _envelope(self, body: Mapping[str, Any], kind: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-fake{next(self._ids):06d}",
            "object": kind,
            "created": _CREATED,
            "model": body.get("model", self.model),
            "system_fingerprint": "fp_fake",
        }

    def _chunks(self, body: Mapping[str, Any]) -> Iterator[bytes]:
        text = self.reply_text(body)
        envelope = self._envelope(body, "chat.completion.chunk")  # one id for the whole stream, as OpenAI does
        yield from _data(envelope, {"role": "assistant", "content": "", "refusal": None})
        for piece in split_words(text):
            yield from _data(envelope, {"content": piece})
        yield from _data(envelope, {}, finish_reason="stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            yield from sse_events([(None, json.dumps({**envelope, "choices": [], "usage": _usage(body, text)}))])
        yield from sse_events([(None, "[DONE]")])

    def _chunks_then_error(self, body: Mapping[str, Any], error_type: str, code: str | None, message: str) -> Iterator[bytes]:
        envelope = self._envelope(body, "chat.completion.chunk")
        yield from _data(envelope, {"role": "assistant", "content": ""})
        error = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
        yield from sse_events([(None, json.dumps(error))])


def _data(envelope: Mapping[str, Any], delta: Mapping[str, Any], finish_reason: str | None = None) -> Iterator[bytes]:
    choice = {"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish_reason}
    return sse_events([(None, json.dumps({**envelope, "choices": [choice]}))])


def _usage(body: Mapping[str, Any], text: str) -> dict[str, int]:
    prompt = sum(math.ceil(len(str(m.get("content", ""))) / 4) + 3 for m in body.get("messages") or [] if isinstance(m, dict))
    completion = len(split_words(text))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _error(
    status: int,
    error_type: str,
    code: str | None,
    message: str,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JsonReply:
    return JsonReply(status, {"error": {"message": message, "type": error_type, "param": param, "code": code}}, dict(headers or {}))
