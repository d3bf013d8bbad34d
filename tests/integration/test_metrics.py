"""The metrics service on a real unit: serving after deploy, after a refresh (skipped without a
controller and a packed charm, like every test of this tier)."""

from collections.abc import Iterator
from pathlib import Path

import jubilant
import pytest

APP = "github-runner-image-builder"
UNIT = f"{APP}/0"
SCRAPE = "curl -sf http://127.0.0.1:9467/metrics"


@pytest.fixture(scope="module")
def juju(charm_path: Path) -> Iterator[jubilant.Juju]:
    with jubilant.temp_model() as juju:
        juju.deploy(charm_path)
        juju.wait(lambda s: jubilant.all_blocked(s, APP), timeout=15 * 60)
        yield juju


def _scrape(juju: jubilant.Juju) -> str:
    return juju.exec(SCRAPE, unit=UNIT).stdout


def test_the_unit_serves_its_figures_on_loopback(juju: jubilant.Juju) -> None:
    text = _scrape(juju)
    assert "github_runner_image_builder_build_running 0.0" in text
    assert 'github_runner_image_builder_builds_total{outcome="success"} 0.0' in text
    service = "github-runner-image-builder-0-metrics.service"
    assert juju.exec(f"systemctl is-enabled {service}", unit=UNIT).stdout.strip() == "enabled"
    # Loopback only: the unit's own address does not answer.
    address = juju.status().apps[APP].units[UNIT].public_address
    probe = juju.exec(f"curl -s -m 3 http://{address}:9467/metrics || echo refused", unit=UNIT)
    assert probe.stdout.strip() == "refused"


def test_the_service_serves_again_after_a_refresh(juju: jubilant.Juju, charm_path: Path) -> None:
    juju.refresh(APP, path=charm_path)
    juju.wait(lambda s: jubilant.all_blocked(s, APP), timeout=15 * 60)
    assert "github_runner_image_builder_build_timeout_seconds 7200.0" in _scrape(juju)
