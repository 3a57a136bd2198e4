"""Calls as units: the CancelToken that ends exactly the calls made with it, and a Stream.

A call to a plugin is cancelled through its token, never through the plugin: the plugin
may be running somebody else's call by the time a cancel arrives, and that call must go
on untouched. So the token learns the call's request id when the request is sent, and a
cancel names that id; a cancel that arrives after the call ended, or before it began,
reaches no other call.

    token = CancelToken()
    # thread A                                   # thread B
    plugin.generate_response(s, u, cancel=token)   token.cancel()

A :class:`Stream` (what ``Plugin.stream_response`` returns) has a token of its own, so
``stream.cancel()`` from another thread ends that stream and nothing else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

__all__ = ["CancelToken", "Stream"]


class CancelToken:
    """Cancels the calls made with it, from any thread; once cancelled, it stays cancelled.

    A call made with a cancelled token ends at once with ``PluginCancelled``, without
    reaching the plugin. One token may serve several calls (say, every call of one chat
    turn, on several plugins): ``cancel()`` ends each of them that is still running.
    """

    def __init__(self) -> None:
        # Re-entrant, and never held while calling out: the garbage collector may finalize a
        # stream made with this token (which unwatches it) inside any of these methods.
        self._lock = threading.RLock()
        self._cancelled = False
        self._event = threading.Event()
        self._watchers: dict[int, Callable[[], object]] = {}
        self._next = 0

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Cancel every call made with this token that has not ended; safe to call twice."""
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            watchers, self._watchers = list(self._watchers.values()), {}
        self._event.set()
        for notify in watchers:
            notify()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking at once on a cancel; True if cancelled."""
        return self._event.wait(seconds)

    def _watch(self, notify: Callable[[], object]) -> int:
        """Call ``notify`` on cancel (at once, here, if already cancelled); returns a key for unwatch."""
        with self._lock:
            self._next += 1
            if not self._cancelled:
                self._watchers[self._next] = notify
                return self._next
        notify()
        return 0

    def _unwatch(self, key: int) -> None:
        with self._lock:
            self._watchers.pop(key, None)

    def __repr__(self) -> str:
        return f"<CancelToken {'cancelled' if self.cancelled else 'live'}>"


class Stream(Iterator[str]):
    """One streamed reply: iterate it for text; ``cancel()`` from any thread ends exactly it.

    ``close()`` (or leaving a ``for`` loop early and dropping the stream) also cancels
    it, from the thread reading it. The call starts at the first ``next()``.
    """

    def __init__(self, chunks: Callable[[CancelToken], Iterator[str]], cancel: CancelToken | None = None) -> None:
        self.token = cancel if cancel is not None else CancelToken()
        self._chunks = chunks(self.token)

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> str:
        return next(self._chunks)

    def cancel(self) -> None:
        """End this stream, from any thread: its reader gets ``PluginCancelled`` (``chars`` set)."""
        self.token.cancel()

    def close(self) -> None:
        """Stop reading: the plugin is told to cancel, and the turn is freed; safe from any thread.

        From a thread other than the one inside ``next()`` right now, this is a
        :meth:`cancel`: a generator cannot be closed while it runs elsewhere.
        """
        try:
            self._chunks.close()  # type: ignore[attr-defined]
        except ValueError:  # "generator already executing": another thread is reading it
            self.cancel()
