"""A server's life as a build sees it, through the run's poller: boot, power-off, gone.

Shared by every kind of server a build boots (the builder; a verification server), so each
gets the same fast notice and the same retries. Nova never retries a scheduling failure ("No
valid host was found"), and a busy cloud produces them: such a server is deleted and booted
again, a bounded number of times, after a pause, within the step's time.
"""

import dataclasses
import logging
import random
import time
from collections.abc import Callable

from github_runner_image_builder.cancel import NEVER, Cancellation
from github_runner_image_builder.cloud.backoff import WaitTimeoutError
from github_runner_image_builder.cloud.client import Cloud, ServerState
from github_runner_image_builder.cloud.poller import Poller

logger = logging.getLogger(__name__)

NO_VALID_HOST = "No valid host was found"
DELETE_TIMEOUT = 300.0


class ServerError(Exception):
    """The server failed (ERROR, vanished, timed out); the message says which and why."""


@dataclasses.dataclass(frozen=True)
class BootRetry:
    """How often, and after how long a pause, a server without a valid host is booted again."""

    times: int = 2
    delay: tuple[float, float] = (30.0, 60.0)  # seconds, chosen at random in this range

    def pause(self) -> float:
        """Return one pause: spread, so that builds that failed together do not retry together."""
        low, high = self.delay
        return random.uniform(low, high)  # noqa: S311 - spreading retries, not a secret


@dataclasses.dataclass(frozen=True)
class Booted:
    """A server that has left BUILD, and when it was created (the poller's clock).

    Every answer asked for after `created_at` shows the server, so the wait for its power-off
    may count them (`wait_for_power_off(since=)`): a short guest already seen SHUTOFF by the
    boot's own last answer then costs no further tick.
    """

    server_id: str
    created_at: float


def _booted(state: ServerState | None) -> ServerState | None:
    if state is None:
        raise ServerError("disappeared while booting")
    return None if state.status == "BUILD" else state


def boot(
    cloud: Cloud,
    poller: Poller,
    create: Callable[[], str],
    record: Callable[[str | None], None],
    *,
    timeout: float,
    label: str,
    retry: BootRetry = BootRetry(),
    cancellation: Cancellation = NEVER,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Booted:
    """Create a server with `create` and wait until it has left BUILD; return it.

    `record` is told each server's ID as soon as it exists (and None once it is deleted), so
    the caller's cleanup always knows what to delete. Raises ServerError when it goes to
    ERROR for another reason, or still finds no valid host after `retry.times` more boots, or
    when no time is left for another boot within `timeout`.
    """
    deadline = clock() + timeout
    for attempt in range(retry.times + 1):
        server_id = create()
        created_at = poller.now()
        record(server_id)
        try:
            state = poller.wait_server(
                server_id,
                _booted,
                max(0.0, deadline - clock()),
                f"server {server_id} to boot",
                cancellation,
            )
        except WaitTimeoutError as exc:
            raise ServerError(str(exc)) from exc
        if state.status != "ERROR":
            return Booted(server_id, created_at)
        fault = state.fault or "no fault given"
        boots = f" (boot {attempt + 1} of {retry.times + 1})" if attempt else ""
        error = f"server {server_id} went to ERROR: {fault}{boots}"
        if NO_VALID_HOST not in fault or attempt == retry.times:
            raise ServerError(error)
        pause = retry.pause()
        if clock() + pause >= deadline:
            raise ServerError(f"{error}; no time left within the timeout to boot again")
        logger.warning(
            "%s: %s; deleting it and booting again in %.0f s (retry %d of %d)",
            label,
            error,
            pause,
            attempt + 1,
            retry.times,
        )
        delete(cloud, poller, server_id)
        record(None)
        cancellation.pause(pause, sleep)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _powered_off(state: ServerState | None) -> bool | None:
    if state is None:
        raise ServerError("disappeared while running")
    if state.status == "ERROR":
        raise ServerError(f"went to ERROR: {state.fault or 'no fault given'}")
    return True if state.status == "SHUTOFF" else None


def wait_for_power_off(
    poller: Poller,
    server_id: str,
    timeout: float,
    cancellation: Cancellation = NEVER,
    *,
    since: float | None = None,
) -> None:
    """Return once the guest has powered itself off; raise ServerError on ERROR, gone, timeout.

    `since`: answers asked for after it count (`Booted.created_at`), not only later ones.
    """
    try:
        poller.wait_server(
            server_id,
            _powered_off,
            timeout,
            f"server {server_id} to shut off",
            cancellation,
            since=since,
        )
    except ServerError as exc:
        raise ServerError(f"server {server_id} {exc}") from exc
    except WaitTimeoutError as exc:
        raise ServerError(str(exc)) from exc


def request_delete(cloud: Cloud, poller: Poller, server_id: str) -> float:
    """Ask Nova to delete a server; return when (the poller's clock), for `delete`'s wait."""
    asked_at = poller.now()
    cloud.delete_server(server_id)
    return asked_at


def delete(
    cloud: Cloud,
    poller: Poller,
    server_id: str,
    timeout: float = DELETE_TIMEOUT,
    *,
    asked_at: float | None = None,
) -> None:
    """Delete a server and return once it is gone (its port then frees its security group).

    `asked_at`: when its deletion was asked for (`request_delete`); only wait, and any list
    since then that no longer shows it will do. Never cancelled: it is what a cancelled
    build's cleanup runs.
    """
    if asked_at is None:
        asked_at = request_delete(cloud, poller, server_id)
    poller.wait_server(
        server_id,
        lambda state: True if state is None else None,
        timeout,
        f"{server_id} to go",
        since=asked_at,
    )
