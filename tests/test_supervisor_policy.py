"""The restart policy on its own: runner.restarts.RestartGate driven by a fake clock.

No processes and no threads: every test feeds events with explicit times and checks
the decisions, so back-off, the quarantine window, the half-open probe and the
stable reset are pinned exactly.
"""

from __future__ import annotations

import pytest

from runner import STATES, RestartPolicy
from runner.restarts import Decision, RestartGate

pytestmark = pytest.mark.timeout(10)

POLICY = RestartPolicy(
    backoff_initial=0.5, backoff_factor=2.0, backoff_max=3.0, max_failures=3, window=10.0, cooldown=20.0, stable_after=5.0
)


class Clock:
    """A fake monotonic clock: only moves when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def crash(sup: RestartGate, clock: Clock) -> bool:
    """A process started now and died at once; returns whether that opened the quarantine."""
    sup.started(clock())
    return sup.failed(clock())


# -- back-off ----------------------------------------------------------------------------


def test_backoff_grows_exponentially_and_caps() -> None:
    assert [POLICY.backoff(n) for n in range(7)] == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert POLICY.backoff(-1) == 0.0
    slow = RestartPolicy(backoff_initial=0.1, backoff_factor=3.0, backoff_max=100.0)
    assert [round(slow.backoff(n), 6) for n in (1, 2, 3, 4)] == [0.1, 0.3, 0.9, 2.7]
    flat = RestartPolicy(backoff_initial=0.2, backoff_factor=1.0)
    assert {flat.backoff(n) for n in range(1, 20)} == {0.2}


def test_decide_waits_the_backoff_after_each_consecutive_failure() -> None:
    clock = Clock()
    policy = RestartPolicy(backoff_initial=0.5, backoff_factor=2.0, backoff_max=3.0, max_failures=100, window=1000.0)
    sup = RestartGate(policy)
    assert sup.decide(clock()) == Decision(True)  # never failed: start at once
    waits = []
    for _ in range(6):
        assert not crash(sup, clock)
        decision = sup.decide(clock())
        assert decision.allowed and not decision.quarantined
        waits.append(decision.wait)
        clock.advance(decision.wait)
        assert sup.decide(clock()) == Decision(True)  # the back-off has passed
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_decide_wait_counts_down_from_the_failure() -> None:
    clock = Clock()
    sup = RestartGate(POLICY)
    crash(sup, clock)
    crash(sup, clock)  # two failures: back-off 1.0 s from the last one
    clock.advance(0.25)
    assert sup.decide(clock()).wait == pytest.approx(0.75)
    clock.advance(0.75)
    assert sup.decide(clock()) == Decision(True)


def test_default_policy_is_valid_and_sane() -> None:
    policy = RestartPolicy()
    assert policy.backoff(1) == policy.backoff_initial
    assert policy.backoff(100) == policy.backoff_max
    assert policy.max_failures >= 2 and policy.cooldown > 0 and policy.stable_after > 0
    assert RestartGate().policy == policy


# -- quarantine --------------------------------------------------------------------------


def test_quarantine_after_max_failures_within_the_window() -> None:
    clock = Clock()
    sup = RestartGate(POLICY)
    assert not crash(sup, clock)
    clock.advance(1)
    assert not crash(sup, clock)
    clock.advance(1)
    assert crash(sup, clock)  # the third within 10 s opens the circuit
    assert sup.quarantines == 1 and sup.is_quarantined(clock())
    assert sup.consecutive == 3


def test_failures_outside_the_window_do_not_count() -> None:
    clock = Clock()
    sup = RestartGate(POLICY)
    crash(sup, clock)
    clock.advance(6)
    crash(sup, clock)
    clock.advance(4.5)  # the first failure is now 10.5 s old: outside the 10 s window
    assert not crash(sup, clock)
    assert sup.consecutive == 2 and not sup.is_quarantined(clock())
    clock.advance(11)  # both older ones leave the window
    assert not crash(sup, clock)
    assert sup.consecutive == 1
    clock.advance(1)
    assert not crash(sup, clock)
    clock.advance(1)
    assert crash(sup, clock)  # three within the window again
    assert sup.quarantines == 1


def test_a_failure_exactly_at_the_window_edge_still_counts() -> None:
    clock = Clock()
    sup = RestartGate(POLICY)
    crash(sup, clock)
    clock.advance(5)
    crash(sup, clock)
    clock.advance(5)  # the first is exactly `window` old
    assert crash(sup, clock)


def test_decide_during_quarantine_says_quarantined_with_the_remaining_wait() -> None:
    clock = Clock()
    sup = RestartGate(POLICY)
    for _ in range(3):
        crash(sup, clock)
    decision = sup.decide(clock())
    assert decision == Decision(False, POLICY.cooldown, quarantined=True)
    clock.advance(7.5)
    decision = sup.decide(clock())
    assert not decision.allowed and decision.quarantined
    assert decision.wait == pytest.approx(12.5)
    assert sup.is_quarantined(clock())
    clock.advance(12.4)
    assert sup.decide(clock()).quarantined and sup.decide(clock()).wait == pytest.approx(0.1)
    assert not sup.half_open  # asking does not end the quarantine early


def test_half_open_after_cooldown_one_failure_requarantines() -> None:
    clock = Clock()
    sup = RestartGate(POLICY)
    for _ in range(3):
        crash(sup, clock)
    clock.advance(POLICY.cooldown)
    assert not sup.is_quarantined(clock())
    decision = sup.decide(clock())
    assert decision == Decision(True)  # the probe start is allowed at once, no back-off
    assert sup.half_open
    assert crash(sup, clock)  # a single failure of the probe re-opens the circuit
    assert sup.quarantines == 2 and sup.is_quarantined(clock())
    decision = sup.decide(clock())
    assert decision.quarantined and decision.wait == pytest.approx(POLICY.cooldown)


def test_half_open_probe_that_fails_long_after_the_window_still_requarantines() -> None:
    clock = Clock()
    policy = RestartPolicy(max_failures=3, window=1.0, cooldown=50.0, backoff_initial=0.1)
    sup = RestartGate(policy)
    for _ in range(3):
        crash(sup, clock)
    clock.advance(policy.cooldown)
    assert sup.decide(clock()).allowed
    assert crash(sup, clock)  # old failures are far outside the window: half-open alone decides


@pytest.mark.parametrize("window", [10.0, 100.0], ids=["window<cooldown", "window>cooldown"])
def test_half_open_success_closes_the_circuit(window: float) -> None:
    clock = Clock()
    policy = RestartPolicy(backoff_initial=0.5, backoff_max=3.0, max_failures=3, window=window, cooldown=20.0, stable_after=5.0)
    sup = RestartGate(policy)
    for _ in range(3):
        crash(sup, clock)
    clock.advance(policy.cooldown)  # with the larger window the old failures are still in it
    assert sup.decide(clock()).allowed
    sup.started(clock())
    clock.advance(0.1)
    sup.succeeded(clock())  # the probe answered: closed again
    assert not sup.half_open and not sup.is_quarantined(clock())
    # Closed means counting from zero again: the next crash is a first failure, with the
    # first back-off, not an instant re-quarantine on the strength of the old count.
    clock.advance(0.1)
    assert not sup.failed(clock())
    assert sup.consecutive == 1
    decision = sup.decide(clock())
    assert decision.allowed and not decision.quarantined and decision.wait == pytest.approx(policy.backoff_initial)
    clock.advance(decision.wait)
    assert not crash(sup, clock)
    assert crash(sup, clock)  # max_failures new failures are needed to open it again
    assert sup.quarantines == 2


# -- the stable reset --------------------------------------------------------------------


def test_counter_resets_only_after_stable_after() -> None:
    clock = Clock()
    sup = RestartGate(POLICY)
    crash(sup, clock)
    crash(sup, clock)
    sup.started(clock())
    clock.advance(POLICY.stable_after - 0.01)
    sup.succeeded(clock())  # a success before stable_after: the count stays
    assert sup.consecutive == 2
    clock.advance(0.01)
    sup.succeeded(clock())  # the process has now been up stable_after seconds
    assert sup.consecutive == 0
    assert sup.decide(clock()) == Decision(True)


def test_quick_successes_between_crashes_do_not_hide_a_flapping_plugin() -> None:
    clock = Clock()
    sup = RestartGate(POLICY)
    opened = []
    for _ in range(3):
        sup.started(clock())
        clock.advance(0.5)
        sup.succeeded(clock())  # answers once ...
        clock.advance(0.5)
        opened.append(sup.failed(clock()))  # ... then dies, well before stable_after
        clock.advance(sup.decide(clock()).wait)
    assert opened == [False, False, True]


def test_stable_reset_measures_from_the_latest_start() -> None:
    clock = Clock()
    sup = RestartGate(POLICY)
    crash(sup, clock)
    clock.advance(POLICY.stable_after * 2)  # long idle while stopped: not a stable process
    sup.started(clock())
    clock.advance(1)
    sup.succeeded(clock())
    assert sup.consecutive == 1
    clock.advance(POLICY.stable_after)
    sup.succeeded(clock())
    assert sup.consecutive == 0


def test_restarts_count_only_starts_after_a_failure() -> None:
    clock = Clock()
    sup = RestartGate(POLICY)
    sup.started(clock())
    assert sup.restarts == 0
    sup.failed(clock())
    sup.started(clock())
    assert sup.restarts == 1
    sup.failed(clock())
    sup.started(clock())
    assert sup.restarts == 2


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["backoff_initial", "backoff_factor", "backoff_max", "max_failures", "window", "cooldown", "stable_after"]
)
@pytest.mark.parametrize("value", [0, -1, -0.5, True, "1", None])
def test_policy_fields_must_be_positive_numbers(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"RestartPolicy\.{field} must be positive, got {value!r}"):
        RestartPolicy(**{field: value})  # type: ignore[arg-type]


def test_backoff_factor_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="backoff_factor must be at least 1"):
        RestartPolicy(backoff_factor=0.5)
    assert RestartPolicy(backoff_factor=1).backoff(5) == RestartPolicy().backoff_initial


def test_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        RestartPolicy().cooldown = 1.0  # type: ignore[misc]


def test_states_vocabulary() -> None:
    assert STATES == ("stopped", "starting", "ready", "busy", "restarting", "quarantined", "failed", "disabled")
