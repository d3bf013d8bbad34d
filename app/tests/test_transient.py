"""Which cloud errors are retried, how often, and that each retry is logged."""

import logging
from collections.abc import Callable

import pytest
from keystoneauth1 import exceptions as ksa
from openstack import exceptions as sdk

from github_runner_image_builder.cloud import transient


def _http(status: int) -> sdk.HttpException:
    error = sdk.HttpException(f"HTTP {status}")
    error.status_code = status
    return error


def _flaky(errors: list[BaseException]) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def action() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "ok"

    return calls, action


@pytest.mark.parametrize(
    "error",
    [
        _http(503),
        _http(500),
        ksa.ConnectFailure("connection reset by peer"),
        ksa.ServiceUnavailable(),  # Keystone's own 503, from keystoneauth
        ConnectionResetError(104, "reset"),
        sdk.ServiceDiscoveryException("No endpoint data found."),  # discovery got a 503
    ],
)
def test_transient_errors_are_retried_and_logged(
    error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    calls, action = _flaky([error, error])
    pauses: list[float] = []
    with caplog.at_level(logging.WARNING):
        assert transient.call(action, "list servers", sleep=pauses.append) == "ok"
    assert len(calls) == 3
    assert len(pauses) == 2 and all(0 < p <= transient.MAX_WAIT + 1 for p in pauses)
    assert caplog.text.count("list servers failed (attempt") == 2


@pytest.mark.parametrize("error", [_http(404), _http(409), _http(401), ksa.SSLError("bad cert")])
def test_other_errors_are_raised_at_once(error: BaseException) -> None:
    calls, action = _flaky([error])
    with pytest.raises(type(error)):
        transient.call(action, "x", sleep=lambda s: None)
    assert len(calls) == 1


def test_a_create_is_retried_only_when_it_cannot_have_taken_effect() -> None:
    calls, action = _flaky([_http(503), ksa.ConnectFailure("refused")])
    assert transient.call(action, "x", transient.Kind.CREATE, sleep=lambda s: None) == "ok"
    calls, action = _flaky([_http(500)])
    with pytest.raises(sdk.HttpException):
        transient.call(action, "x", transient.Kind.CREATE, sleep=lambda s: None)
    assert len(calls) == 1


def test_a_persistent_failure_raises_the_last_error_after_the_last_attempt() -> None:
    errors: list[BaseException] = [_http(503) for _ in range(10)]
    calls, action = _flaky(errors)
    with pytest.raises(sdk.HttpException, match="HTTP 503"):
        transient.call(action, "x", sleep=lambda s: None)
    assert len(calls) == transient.ATTEMPTS
