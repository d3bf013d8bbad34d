"""Integration tests need a real Juju controller and OpenStack cloud; skip cleanly without."""

import os
import shutil
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = None
    if shutil.which("juju") is None:
        reason = "no juju CLI on PATH: integration tests need a Juju controller"
    elif not os.environ.get("JUJU_CONTROLLER") and not os.path.exists(
        os.path.expanduser("~/.local/share/juju/controllers.yaml")
    ):
        reason = "no Juju controller configured (set JUJU_CONTROLLER or bootstrap one)"
    if reason:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")
def charm_path() -> Path:
    """Return the packed charm every test of this tier deploys (CHARM_PATH)."""
    path = os.environ.get("CHARM_PATH")
    if not path:
        pytest.skip("set CHARM_PATH to a packed .charm file (charmcraft pack on Ubuntu)")
    return Path(path)
