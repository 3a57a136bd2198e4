"""The plugin author contract: the ``LLMClient`` base class every sandchat plugin subclasses.

A plugin is one Python file that defines one concrete subclass of :class:`LLMClient`.
Only two methods are required, exactly as in the original plugin guide:

* ``generate_response(system, user_message, max_tokens=4096, temperature=0.8) -> str``
* ``count_tokens(text) -> int``

Everything else here is optional and has a working default, so a two-method plugin
streams (one chunk), chats (the history rendered into one message), reports itself
ready and leaves its counting method unstated, unchanged.
This module is standard library only: it is imported inside the plugin sandbox.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence

__all__ = ["DEFAULT_CONTEXT_WINDOW", "LLMClient", "Message", "render_messages"]

#: Tokens a plugin is assumed to accept when it does not say otherwise.
DEFAULT_CONTEXT_WINDOW = 8192

#: A chat message: ``{"role": "user" | "assistant", "content": str}``.
Message = Mapping[str, str]


class _Unset(float):
    """The contract's default temperature (0.8), recognisable as "the caller did not say".

    The optional methods below pass it on by leaving ``temperature`` out, so a plugin
    that gives ``generate_response`` a default of its own gets that one.
    """


_UNSET = _Unset(0.8)


def _temperature(temperature: float) -> tuple[float, ...]:
    return () if temperature is _UNSET else (temperature,)


def render_messages(messages: Sequence[Message]) -> str:
    """Render a chat history as one plain-text message for single-turn models.

    A lone user message is passed through untouched, so single-turn plugins see
    exactly what the user typed.
    """
    if len(messages) == 1 and messages[0].get("role") == "user":
        return str(messages[0].get("content", ""))
    lines = []
    for message in messages:
        role = str(message.get("role", "user")).capitalize()
        lines.append(f"{role}: {message.get('content', '')}")
    lines.append("Assistant:")
    return "\n\n".join(lines)


class LLMClient(ABC):
    """Base class for a language-model back-end.

    Subclasses must implement :meth:`generate_response` and :meth:`count_tokens`.
    They may override :meth:`stream_response`, :meth:`generate_chat`,
    :meth:`stream_chat`, :meth:`check`, :meth:`token_counting` and the
    :attr:`context_window` attribute (a property is fine: it is read again after each
    :meth:`check`, so a plugin may learn its server's window there).
    """

    #: How many tokens (prompt plus reply) the model accepts.
    context_window: int = DEFAULT_CONTEXT_WINDOW

    @abstractmethod
    def generate_response(self, system: str, user_message: str, max_tokens: int = 4096, temperature: float = 0.8) -> str:
        """Return the model's reply to ``user_message`` under the ``system`` prompt."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Return how many tokens ``text`` takes for this model."""

    def stream_response(self, system: str, user_message: str, max_tokens: int = 4096, temperature: float = _UNSET) -> Iterator[str]:
        """Yield the reply in pieces; by default the whole reply as one piece."""
        yield self.generate_response(system, user_message, max_tokens, *_temperature(temperature))

    def generate_chat(
        self,
        system: str,
        messages: Sequence[Message],
        max_tokens: int = 4096,
        temperature: float = _UNSET,
    ) -> str:
        """Reply to a multi-turn history; by default it is rendered into one message."""
        return self.generate_response(system, render_messages(messages), max_tokens, *_temperature(temperature))

    def stream_chat(
        self,
        system: str,
        messages: Sequence[Message],
        max_tokens: int = 4096,
        temperature: float = _UNSET,
    ) -> Iterator[str]:
        """Stream a reply to a multi-turn history.

        The default streams :meth:`generate_chat` when a subclass overrides it, and
        otherwise streams :meth:`stream_response` on the rendered history.
        """
        given = _temperature(temperature)
        if type(self).generate_chat is not LLMClient.generate_chat:
            yield self.generate_chat(system, messages, max_tokens, *given)
            return
        yield from self.stream_response(system, render_messages(messages), max_tokens, *given)

    def check(self) -> str | None:
        """Why this plugin cannot answer right now, in one line, or ``None`` when it can.

        For example "ANTHROPIC_API_KEY is not set", "cannot reach http://127.0.0.1:8080
        (connection refused)", "model file not found: ...". It must be cheap and spend no
        tokens (look at a key, list the server's models, stat a file): ``sandchat plugins
        health`` and the chat's plugin menu call it, under a deadline of their own. The
        default says ready.
        """
        return None

    def token_counting(self) -> str:
        """How :meth:`count_tokens` counts right now, for people; ``""`` if unstated (the default).

        Start with "exact" or "estimate", then say how: "exact: the server's /tokenize",
        "estimate: tiktoken cl100k_base". sandchat labels counts from an estimate as such.
        """
        return ""
