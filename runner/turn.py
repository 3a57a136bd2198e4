"""Turn: one call at a time per plugin, waited for under the caller's deadline and cancel.

A plugin process serves one request at a time, so callers take turns. A plain lock
would let a caller queue behind a slow call with no deadline and no way to cancel
it; here the wait ends at the caller's deadline or at its token's cancel, whichever
comes first. The turn is re-entrant for the thread that holds it (a health check
pings from inside its own turn), and may be given back from another thread: a
stream's generator, which holds the turn between chunks, can be closed by the
garbage collector anywhere.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.calls import CancelToken

__all__ = ["Turn"]


class Turn:
    """A re-entrant, deadline-aware and cancellable lock with a lock-free-ish fast path."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()  # held from the first take to the last give
        self._cond = threading.Condition(threading.Lock())  # where waiters sleep
        self._owner: int | None = None
        self._depth = 0
        self._waiting = 0

    @property
    def held(self) -> bool:
        return self._mutex.locked()

    def take_now(self) -> bool:
        """Take the turn if nobody has it (or this thread does); never waits."""
        if self._mutex.acquire(False):
            self._owner, self._depth = threading.get_ident(), 1
            return True
        if self._owner == threading.get_ident():  # only the owner can find itself here
            self._depth += 1
            return True
        return False

    def take(self, until: float, cancel: CancelToken | None = None) -> bool:
        """Wait for the turn until the monotonic time ``until`` or a cancel; True once it is ours.

        A turn that frees up as the deadline passes is handed back: the caller's time is
        gone, and it must not start a request it can no longer wait for.
        """
        if self.take_now():
            return True
        key = cancel._watch(self._wake) if cancel is not None else 0
        try:
            with self._cond:
                self._waiting += 1
                try:
                    while True:
                        # Take before looking at the token: a woken waiter that gave up
                        # without taking would swallow the wake-up meant for the next one.
                        if self._mutex.acquire(False):
                            self._owner, self._depth = threading.get_ident(), 1
                            break
                        left = until - time.monotonic()
                        if left <= 0 or (cancel is not None and cancel.cancelled):
                            return False
                        self._cond.wait(left)
                finally:
                    self._waiting -= 1
        finally:
            if key:
                cancel._unwatch(key)  # type: ignore[union-attr]
        if time.monotonic() >= until or (cancel is not None and cancel.cancelled):
            self.give()
            return False
        return True

    def give(self) -> None:
        """Give the turn back (once per take); the next waiter, if any, gets it."""
        self._depth -= 1
        if self._depth:
            return
        self._owner = None
        self._mutex.release()
        if self._waiting:  # read after the release: a waiter counted later finds the mutex free
            with self._cond:
                self._cond.notify()

    def _wake(self) -> None:
        """A token was cancelled: every waiter looks at its own token (only its owner leaves)."""
        with self._cond:
            self._cond.notify_all()
