"""Deploy the packed charm on a real Juju model (skipped without a controller)."""

from collections.abc import Iterator
from pathlib import Path

import jubilant
import pytest

APP = "github-runner-image-builder"


@pytest.fixture(scope="module")
def juju() -> Iterator[jubilant.Juju]:
    with jubilant.temp_model() as juju:
        yield juju


def test_deploy_blocks_until_configured(juju: jubilant.Juju, charm_path: Path) -> None:
    juju.deploy(charm_path)
    status = juju.wait(lambda s: jubilant.all_blocked(s, APP), timeout=15 * 60)
    message = status.apps[APP].units[f"{APP}/0"].workload_status.message
    assert "openstack" in message or "image integration required" in message
