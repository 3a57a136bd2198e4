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

_SLICE = 0.25  # the longest a waiter sleeps before it looks again (see _queue)


class Turn:
    """A re-entrant, deadline-aware, cancellable and first-come-first-served lock.

    The fast path (nobody holds it, nobody waits) is one non-blocking acquire. Waiters
    take tickets and are served in order: a thread that calls in a loop cannot starve
    the ones queued behind it, and a newcomer never jumps a queue that has formed. The
    owner is a thread object, not a thread id: ids are reused once a thread ends.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()  # held from the first take to the last give
        # Re-entrant: the garbage collector may finalize an abandoned stream, whose generator
        # gives the turn back, on a thread that is inside take() or give() holding this lock.
        self._cond = threading.Condition(threading.RLock())  # where waiters sleep; guards owner and depth
        self._owner: threading.Thread | None = None
        self._depth = 0
        self._waiting = 0
        self._tickets = 0  # the next ticket to hand out
        self._serving = 0  # the ticket whose turn is next
        self._gone: set[int] = set()  # tickets whose holders gave up (deadline, cancel, Ctrl-C)
        self._shut = False

    @property
    def held(self) -> bool:
        return self._mutex.locked()

    def take_now(self) -> bool:
        """Take the turn if nobody has it or waits for it (or this thread has it); never waits."""
        if not self._waiting and self._mutex.acquire(False):
            self._owner, self._depth = threading.current_thread(), 1
            return True
        if self._owner is threading.current_thread():  # only the owner can find itself here
            with self._cond:  # a give from another thread (a finalized stream) may be under way
                if self._owner is threading.current_thread():
                    self._depth += 1
                    return True
        return False

    def take(self, until: float, cancel: CancelToken | None = None) -> bool:
        """Wait for the turn until the monotonic time ``until``, a cancel or :meth:`shut`; True once ours.

        A turn that frees up as the deadline passes is handed back: the caller's time is
        gone, and it must not start a request it can no longer wait for.
        """
        if self.take_now():
            return True
        taken = False
        try:
            key = cancel._watch(self._wake) if cancel is not None else 0
            try:
                with self._cond:
                    taken = self._queue(until, cancel)
            finally:
                if key:
                    cancel._unwatch(key)  # type: ignore[union-attr]
        except BaseException:
            if taken:
                self.give()  # a Ctrl-C after the take, before our caller could know: never keep it
            raise
        if taken and (time.monotonic() >= until or (cancel is not None and cancel.cancelled)):
            self.give()
            return False
        return taken

    def shut(self) -> None:
        """Send every waiter, now and later, away empty-handed (the plugin is closed)."""
        with self._cond:
            self._shut = True
            self._cond.notify_all()

    def _queue(self, until: float, cancel: CancelToken | None) -> bool:
        """Wait in line (the condition lock held): True with the turn, False on deadline, cancel or shut."""
        ticket, self._tickets = self._tickets, self._tickets + 1
        self._waiting += 1
        served = False
        try:
            while not self._shut:
                left = until - time.monotonic()
                if ticket == self._serving and self._mutex.acquire(False):
                    self._owner, self._depth, served = threading.current_thread(), 1, True
                    return True
                if left <= 0 or (cancel is not None and cancel.cancelled):
                    return False
                # In slices: the garbage collector may finalize an abandoned stream on this very
                # thread, between our look and our sleep, and its give() wakes nobody then.
                self._cond.wait(min(left, _SLICE))
            return False
        finally:  # on every way out (Ctrl-C in wait() included) the line moves on without us
            self._waiting -= 1
            if served or ticket == self._serving:
                self._advance()
                if not served:
                    self._cond.notify_all()  # it was our turn: it is the next one's now
            else:
                self._gone.add(ticket)  # skipped when its turn comes

    def _advance(self) -> None:
        """The ticket being served is done with: serve the next one still waiting (condition lock held)."""
        self._serving += 1
        while self._serving in self._gone:
            self._gone.discard(self._serving)
            self._serving += 1

    def give(self) -> None:
        """Give the turn back (once per take), from any thread; the first in line, if any, gets it."""
        with self._cond:  # against the owner's nested take_now() while another thread gives
            self._depth -= 1
            if self._depth:
                return
            self._owner = None
            self._mutex.release()
            if self._waiting:
                self._cond.notify_all()  # each waiter looks at its ticket; the one served takes it

    def _wake(self) -> None:
        """A token was cancelled: every waiter looks at its own token (only its owner leaves)."""
        with self._cond:
            self._cond.notify_all()
