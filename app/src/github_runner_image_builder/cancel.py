"""Cancellation of a whole `build` run (SIGTERM, SIGINT): one flag every build thread reads.

Only a step's `run` is cancelled: its waits raise `Cancelled` at their next pause, so the step
fails with the error "cancelled" and the pipeline runs every cleanup as after any failure. The
cleanups themselves never look at the flag: they must finish to leave nothing behind.
"""

import threading
from collections.abc import Callable

# The longest a cancelled pause keeps sleeping: a cancellation is noticed within this.
SLICE = 1.0

CANCELLED = "cancelled"


class Cancelled(Exception):  # noqa: N818 - a cancellation is not an error of the step
    """The run was cancelled while this step was running."""

    def __init__(self) -> None:
        super().__init__(CANCELLED)


class Cancellation:
    """A flag set once (by a signal handler) and read by every build thread."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask every build to stop: safe to call from a signal handler."""
        self._event.set()

    @property
    def requested(self) -> bool:
        """Whether the run was cancelled."""
        return self._event.is_set()

    def check(self) -> None:
        """Raise Cancelled when the run was cancelled."""
        if self._event.is_set():
            raise Cancelled()

    def pause(self, seconds: float, sleep: Callable[[float], None]) -> None:
        """Sleep `seconds` in slices of at most SLICE; raise Cancelled once cancelled.

        `sleep` is time.sleep, or a fake clock's in tests.
        """
        self.check()
        while seconds > 0:
            step = min(seconds, SLICE)
            sleep(step)
            seconds -= step
            self.check()


# A flag nobody sets: for the waits of cleanups, and for code run outside a build.
NEVER = Cancellation()
