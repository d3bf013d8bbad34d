"""Which cloud errors are transient, and how often one call is tried again (with tenacity).

A busy cloud answers 5xx or drops a connection now and then; Nova, Glance, Neutron and
Keystone alike. One call is retried a few times with exponential backoff and jitter, each
retry logged as a warning; after the last attempt the call's own error is raised, so the step
fails naming it. Calls that create something are retried only when the request cannot have
taken effect (a gateway's 502/503/504, a connection that failed), and the caller first looks
for what an earlier attempt may have created anyway.
"""

import enum
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import tenacity

logger = logging.getLogger(__name__)

T = TypeVar("T")

ATTEMPTS = 5
FIRST_WAIT = 1.0
MAX_WAIT = 10.0
_GATEWAY = frozenset({502, 503, 504})


class Kind(enum.Enum):
    """How safe a call is to repeat."""

    READ = "read"  # reads and deletes: repeating one changes nothing
    CREATE = "create"  # may have created something before it failed


def _status(exc: BaseException) -> int | None:
    """Return the HTTP status an openstacksdk or keystoneauth error carries, if any."""
    for attribute in ("status_code", "http_status"):
        value = getattr(exc, attribute, None)
        if isinstance(value, int):
            return value
    return None


def _never_reached(exc: BaseException) -> bool:
    """Whether the request cannot have reached the service: no connection, or no endpoint."""
    # Imported here: the CLI's commands that use no cloud never import openstacksdk.
    from keystoneauth1 import exceptions as ksa  # noqa: PLC0415
    from openstack import exceptions as sdk  # noqa: PLC0415
    from requests import exceptions as rq  # noqa: PLC0415

    if isinstance(exc, ksa.SSLError | rq.SSLError):
        return False  # a certificate problem does not go away by asking again
    # A service whose version discovery got a 5xx: openstacksdk says it has no endpoint.
    if isinstance(exc, sdk.ServiceDiscoveryException):
        return True
    return isinstance(exc, ksa.ConnectionError | rq.ConnectionError | ConnectionError)


def is_transient(exc: BaseException, kind: Kind) -> bool:
    """Return whether `exc` from a call of `kind` is worth one more attempt."""
    if _never_reached(exc):
        return True
    status = _status(exc)
    if status is None:
        return False
    return status in _GATEWAY if kind is Kind.CREATE else 500 <= status <= 599


def call(
    action: Callable[[], T],
    what: str,
    kind: Kind = Kind.READ,
    *,
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Return `action()`, retried on transient errors; raise the last error when they persist."""

    def log(retry_state: tenacity.RetryCallState) -> None:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome else None
        pause = retry_state.next_action.sleep if retry_state.next_action else 0.0
        logger.warning(
            "%s failed (attempt %d of %d): %s; retrying in %.1f s",
            what,
            retry_state.attempt_number,
            attempts,
            error,
            pause,
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda exc: is_transient(exc, kind)),
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential_jitter(initial=FIRST_WAIT, max=MAX_WAIT, jitter=FIRST_WAIT),
        sleep=sleep,
        before_sleep=log,
        reraise=True,
    )
    return retrying(action)
