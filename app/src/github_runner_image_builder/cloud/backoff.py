"""Waiting for a cloud resource with exponential backoff within a deadline.

The decision (keep waiting, done, or failed) is the caller's `check`; this module only decides
when to ask again. Clock and sleep are parameters so that the schedule is testable.
"""

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

FIRST_DELAY = 2.0
MAX_DELAY = 30.0


class WaitTimeoutError(Exception):
    """The resource did not reach the wanted state before the deadline."""


def delays(
    first: float = FIRST_DELAY, cap: float = MAX_DELAY, factor: float = 2.0
) -> Iterator[float]:
    """Yield the pauses between polls: first, firstxfactor, … never more than cap."""
    delay = first
    while True:
        yield min(delay, cap)
        delay = min(delay * factor, cap)


def poll_until(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    first: float = FIRST_DELAY,
    cap: float = MAX_DELAY,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call `check` until it returns something other than None, and return that.

    `check` raises to fail at once (e.g. the server went to ERROR). Raises WaitTimeoutError when
    `timeout` seconds pass first; the last pause is shortened so the deadline is kept.
    """
    deadline = clock() + timeout
    pauses = delays(first, cap)
    while True:
        result = check()
        if result is not None:
            return result
        remaining = deadline - clock()
        if remaining <= 0:
            raise WaitTimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        sleep(min(next(pauses), remaining))


def retry(
    action: Callable[[], None],
    timeout: float,
    *,
    first: float = FIRST_DELAY,
    cap: float = MAX_DELAY,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Call `action` until it stops raising; after `timeout` seconds raise its last error.

    For deletions that the cloud refuses for a while (a security group whose port Neutron has
    not released yet).
    """
    errors: list[Exception] = []

    def attempt() -> bool | None:
        try:
            action()
        except Exception as exc:
            errors.append(exc)
            return None
        return True

    try:
        poll_until(attempt, timeout, "retry", first=first, cap=cap, sleep=sleep, clock=clock)
    except WaitTimeoutError:
        raise errors[-1] from None
