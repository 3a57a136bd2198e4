"""The child's spin governor: poll before blocking only while requests come back to back."""

from __future__ import annotations

import os
import select

import pytest

from runner.child.server import SpinGovernor, _spin_until_readable

WINDOW = 100e-6


@pytest.mark.timeout(5)
def test_it_starts_spinning_when_spinning_is_possible() -> None:
    assert SpinGovernor(WINDOW).spinning
    assert not SpinGovernor(0.0).spinning  # one CPU: the other side could not run meanwhile


@pytest.mark.timeout(5)
def test_back_to_back_requests_keep_it_spinning() -> None:
    governor = SpinGovernor(WINDOW)
    for _ in range(100):
        governor.spun(True)  # every spin found its request
        assert governor.spinning


@pytest.mark.timeout(5)
def test_a_spin_that_times_out_stops_it() -> None:
    governor = SpinGovernor(WINDOW)
    governor.spun(False)
    assert not governor.spinning


@pytest.mark.timeout(5)
def test_a_slow_arrival_keeps_it_stopped_and_a_quick_one_resumes_it() -> None:
    governor = SpinGovernor(WINDOW)
    governor.spun(False)
    governor.arrived(10 * WINDOW)  # round-robin over many plugins: the next request went elsewhere
    assert not governor.spinning
    governor.arrived(WINDOW * 1.01)
    assert not governor.spinning  # just past the window: a spin would have timed out too
    governor.arrived(WINDOW / 2)  # this one would have been caught by a spin
    assert governor.spinning
    governor.spun(False)
    assert not governor.spinning  # and it stops again at the next miss


@pytest.mark.timeout(5)
def test_with_no_window_nothing_resumes_it() -> None:
    governor = SpinGovernor(0.0)
    governor.arrived(0.0)
    assert not governor.spinning


@pytest.mark.timeout(5)
def test_the_spin_reports_whether_a_request_came() -> None:
    r, w = os.pipe()
    try:
        readable = select.poll()
        readable.register(r, select.POLLIN)
        assert _spin_until_readable(readable.poll, WINDOW) is False  # nothing written: the spin times out
        os.write(w, b"x")
        assert _spin_until_readable(readable.poll, WINDOW) is True
    finally:
        os.close(r)
        os.close(w)
