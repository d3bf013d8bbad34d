"""Tests of the polling schedule."""

import itertools

import pytest

from github_runner_image_builder.cloud import backoff


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def test_delays_double_from_two_up_to_the_cap() -> None:
    assert list(itertools.islice(backoff.delays(), 7)) == [2, 4, 8, 16, 30, 30, 30]


def test_returns_the_first_result_that_is_not_none() -> None:
    answers = iter([None, None, "SHUTOFF"])
    t = FakeTime()
    assert backoff.poll_until(lambda: next(answers), 60, "x", sleep=t.sleep, clock=t.clock) == (
        "SHUTOFF"
    )
    assert t.slept == [2, 4]


def test_times_out_and_keeps_the_deadline() -> None:
    t = FakeTime()
    with pytest.raises(backoff.WaitTimeoutError, match="timed out after 20 s waiting for server"):
        backoff.poll_until(lambda: None, 20, "server", sleep=t.sleep, clock=t.clock)
    # 2 + 4 + 8 = 14, then only the 6 s left rather than 16.
    assert t.slept == [2, 4, 8, 6]
    assert t.now == 120.0


def test_a_check_that_raises_stops_at_once() -> None:
    t = FakeTime()

    def check() -> None:
        raise RuntimeError("ERROR state")

    with pytest.raises(RuntimeError, match="ERROR state"):
        backoff.poll_until(check, 60, "x", sleep=t.sleep, clock=t.clock)
    assert t.slept == []


def test_retry_until_the_action_succeeds() -> None:
    t = FakeTime()
    failures = iter([RuntimeError("409 in use"), RuntimeError("409 in use")])

    def delete() -> None:
        error = next(failures, None)
        if error:
            raise error

    backoff.retry(delete, 60, sleep=t.sleep, clock=t.clock)
    assert t.slept == [2, 4]


def test_retry_raises_the_last_error_after_the_timeout() -> None:
    t = FakeTime()
    count = itertools.count(1)

    def delete() -> None:
        raise RuntimeError(f"409 in use #{next(count)}")

    with pytest.raises(RuntimeError, match="409 in use #5"):
        backoff.retry(delete, 20, sleep=t.sleep, clock=t.clock)
