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
* ``flavor``: which server's discovery endpoints to offer besides chat completions.
  ``"openai"`` (the default): ``/v1/models`` only. ``"llama.cpp"``: ``GET /props``
  (``default_generation_settings.n_ctx``) and ``POST /tokenize`` (``{"content"}`` →
  ``{"tokens": [ids]}``). ``"vllm"``: ``max_model_len`` in ``/v1/models`` and ``POST
  /tokenize`` (``{"prompt"}`` → ``{"count", "max_model_len", "tokens"}``).
  ``"llama-cpp-python"``: ``POST /extras/tokenize/count`` (``{"input"}`` → ``{"count"}``)
  and, for a prompt longer than ``n_ctx``, its 400 ``context_length_exceeded`` (or, when
  streaming, a 200 stream closed with no data). ``"bare"``: not even ``/v1/models``.
  The fake tokenizer is one token per UTF-8 byte, so exact counts never equal cl100k's.
* ``stream_end``: ``"done"`` (the default), ``"no_done"`` (finish_reason, then the stream
  closes without ``[DONE]``), ``"cut"`` (content, then closed: no finish_reason, no
  ``[DONE]``), ``"silent"`` (200, then closed with no data, as llama.cpp's server does for a
  prompt longer than its context). ``finish_reason`` sets the reason sent.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

from . import (
    FakeServer,
    JsonReply,
    QueuedError,
    RecordedRequest,
    StreamReply,
    split_words,
    sse_events,
)

__all__ = ["FakeOpenAIServer", "fake_tokens"]

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

    def __init__(
        self,
        *,
        model: str = "fake-model",
        reject_params: tuple[str, ...] = (),
        flavor: str = "openai",
        n_ctx: int = 4096,
        stream_end: str = "done",
        finish_reason: str = "stop",
        **options: Any,
    ) -> None:
        options.setdefault("api_key", None)  # local servers usually run without a key
        super().__init__(**options)
        self.model = model
        self.reject_params = reject_params
        self.flavor = flavor
        self.n_ctx = n_ctx
        self.stream_end = stream_end
        self.finish_reason = finish_reason
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        return super().base_url + "/v1"

    # -- routing -----------------------------------------------------------------------

    def route(self, request: RecordedRequest) -> JsonReply | StreamReply:
        problem = self._check_auth(request)
        if problem is not None:
            return problem
        if request.method == "GET" and request.path == "/v1/models" and self.flavor != "bare":
            model = {"id": self.model, "object": "model", "created": _CREATED, "owned_by": "fake"}
            if self.flavor == "vllm":
                model.update(owned_by="vllm", max_model_len=self.n_ctx)
            return JsonReply(200, {"object": "list", "data": [model]})
        if request.method == "POST" and request.path == "/v1/chat/completions":
            problem = self._check_body(request.body) or self._check_length(request.body)
            if problem is not None:
                return problem
            if request.body.get("stream") is True:
                return StreamReply(self._chunks(request.body))
            return JsonReply(200, self._completion(request.body))
        discovered = self._discovery(request)
        if discovered is not None:
            return discovered
        return _error(404, "invalid_request_error", None, f"Invalid URL ({request.method} {request.path})")

    def _discovery(self, request: RecordedRequest) -> JsonReply | None:
        """The flavor's own window and tokenizer endpoints, as those servers answer them."""
        body = request.body if isinstance(request.body, dict) else {}
        route = (self.flavor, request.method, request.path)
        if route == ("llama.cpp", "GET", "/props"):
            return JsonReply(200, {"default_generation_settings": {"id": 0, "n_ctx": self.n_ctx, "params": {}}, "total_slots": 1})
        if route == ("llama.cpp", "POST", "/tokenize"):
            return JsonReply(200, {"tokens": fake_tokens(str(body.get("content", "")))})
        if route == ("vllm", "POST", "/tokenize"):
            tokens = fake_tokens(str(body.get("prompt", "")))
            return JsonReply(200, {"count": len(tokens), "max_model_len": self.n_ctx, "tokens": tokens, "token_strs": None})
        if route == ("llama-cpp-python", "POST", "/extras/tokenize/count"):
            return JsonReply(200, {"count": len(fake_tokens(str(body.get("input", ""))))})
        return None

    def _check_length(self, body: Mapping[str, Any]) -> JsonReply | StreamReply | None:
        """llama-cpp-python's answer to a prompt longer than its context (the one way it tells n_ctx)."""
        prompt = sum(len(fake_tokens(str(m.get("content", "")))) for m in body["messages"] if isinstance(m, dict))
        if self.flavor != "llama-cpp-python" or prompt < self.n_ctx:
            return None
        if body.get("stream") is True:
            return StreamReply(iter(()))  # 200, then closed: the exception is raised inside its stream task
        asked = int(body.get("max_tokens") or 0)
        message = (
            f"This model's maximum context length is {self.n_ctx} tokens. However, you requested {prompt + asked} tokens "
            f"({prompt} in the messages, {asked} in the completion). Please reduce the length of the messages or completion."
        )
        return _error(400, "invalid_request_error", "context_length_exceeded", message, "messages")

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
            "finish_reason": self.finish_reason,
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
        if self.stream_end == "silent":
            return
        text = self.reply_text(body)
        envelope = self._envelope(body, "chat.completion.chunk")  # one id for the whole stream, as OpenAI does
        yield from _data(envelope, {"role": "assistant", "content": "", "refusal": None})
        for piece in split_words(text):
            yield from _data(envelope, {"content": piece})
        if self.stream_end == "cut":
            return
        yield from _data(envelope, {}, finish_reason=self.finish_reason)
        if self.stream_end == "no_done":
            return
        if (body.get("stream_options") or {}).get("include_usage"):
            yield from sse_events([(None, json.dumps({**envelope, "choices": [], "usage": _usage(body, text)}))])
        yield from sse_events([(None, "[DONE]")])

    def _chunks_then_error(self, body: Mapping[str, Any], error_type: str, code: str | None, message: str) -> Iterator[bytes]:
        envelope = self._envelope(body, "chat.completion.chunk")
        yield from _data(envelope, {"role": "assistant", "content": ""})
        error = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
        yield from sse_events([(None, json.dumps(error))])


def fake_tokens(text: str) -> list[int]:
    """The fake tokenizer: one token per UTF-8 byte (never what cl100k_base counts for text)."""
    return list(text.encode())


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
