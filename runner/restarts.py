"""Restarts: the policy for a crashed plugin, and the gate that applies it to each start.

:class:`RestartPolicy` is the settings: back-off after a crash, how many failures in a
window open the circuit (quarantine), how long the cool-down lasts, and when a process
has been up long enough that its past failures are forgotten. :class:`RestartGate` is a
small pure state machine over them, fed events and the current time (no threads, no
processes, no clock of its own), so it is tested on its own: closed (starts pass, after
their back-off), open (quarantined until the cool-down ends), half-open (the one start
after a cool-down; its first failure opens the circuit again, its first success closes it).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Decision", "RestartGate", "RestartPolicy"]


@dataclass(frozen=True)
class RestartPolicy:
    """When a crashed plugin may start again, and when it is quarantined instead."""

    backoff_initial: float = 0.25  # seconds before the first restart after a crash
    backoff_factor: float = 2.0
    backoff_max: float = 10.0
    max_failures: int = 5  # consecutive failures within ``window`` that open the circuit
    window: float = 60.0
    cooldown: float = 60.0  # how long a quarantine lasts
    stable_after: float = 30.0  # a process this old with no failure resets the count

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"RestartPolicy.{name} must be positive, got {value!r}")
        if self.backoff_factor < 1:
            raise ValueError("RestartPolicy.backoff_factor must be at least 1")

    def backoff(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return min(self.backoff_max, self.backoff_initial * self.backoff_factor ** (failures - 1))


@dataclass(frozen=True)
class Decision:
    """Whether a start may happen now; if not, ``wait`` seconds or quarantined until then."""

    allowed: bool
    wait: float = 0.0
    quarantined: bool = False


class RestartGate:
    """Counts the failures of one plugin and decides about its next start."""

    def __init__(self, policy: RestartPolicy | None = None) -> None:
        self.policy = policy or RestartPolicy()
        self.failures: list[float] = []  # times of consecutive failures, oldest first
        self.quarantined_until: float | None = None
        self.started_at: float | None = None
        self.restarts = 0
        self.quarantines = 0
        self.half_open = False  # the start after a quarantine: one failure re-opens it

    @property
    def consecutive(self) -> int:
        return len(self.failures)

    def decide(self, now: float) -> Decision:
        """May the plugin start now? Also ends a quarantine whose cool-down has passed."""
        if self.quarantined_until is not None:
            if now < self.quarantined_until:
                return Decision(False, self.quarantined_until - now, quarantined=True)
            self.quarantined_until = None
            self.half_open = True  # one start is allowed to prove itself
            return Decision(True)
        if not self.failures:
            return Decision(True)
        ready_at = self.failures[-1] + self.policy.backoff(len(self.failures))
        return Decision(True) if now >= ready_at else Decision(True, wait=ready_at - now)

    def started(self, now: float) -> None:
        if self.failures:
            self.restarts += 1
        self.started_at = now

    def succeeded(self, now: float) -> None:
        """A call went well; after a stable period the failure count is forgotten.

        The first success after a quarantine (the half-open probe) closes the circuit:
        counting starts from zero, so one later crash is not a re-quarantine at once.
        """
        if self.half_open:
            self.half_open = False
            self.failures.clear()
        elif self.failures and self.started_at is not None and now - self.started_at >= self.policy.stable_after:
            self.failures.clear()

    def failed(self, now: float) -> bool:
        """Record a failure that cost the process; return True when it opens the quarantine."""
        self.started_at = None
        self.failures = [t for t in self.failures if now - t <= self.policy.window] + [now]
        if self.half_open or len(self.failures) >= self.policy.max_failures:
            self.half_open = False
            self.quarantined_until = now + self.policy.cooldown
            self.quarantines += 1
            return True
        return False

    def is_quarantined(self, now: float) -> bool:
        return self.quarantined_until is not None and now < self.quarantined_until
