"""The local cloud as a session fixture: one real OpenStack for the whole localcloud tier."""

from collections.abc import Iterator

import pytest

from lcloud import mirror, venv
from lcloud.cloud import LocalCloud


@pytest.fixture(scope="session")
def local_cloud() -> Iterator[LocalCloud]:
    """Start the local cloud once per session; skip only if its services cannot be installed."""
    try:
        venv.ensure()
    except venv.InstallError as error:
        pytest.skip(f"local OpenStack services could not be installed from PyPI: {error}")
    with LocalCloud.start() as cloud:
        yield cloud


@pytest.fixture
def cloud(local_cloud: LocalCloud) -> Iterator[LocalCloud]:
    """The session's cloud with default guests and no faults before and after each test."""
    local_cloud.guests([])
    for proxy in local_cloud.proxies:
        local_cloud.set_fault(proxy, None)
    yield local_cloud
    local_cloud.guests([])
    for proxy in local_cloud.proxies:
        local_cloud.set_fault(proxy, None)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mirror.CloudImagesMirror]:
    """A loopback cloud-images tree with noble and jammy for amd64 (a module may override it)."""
    with mirror.serve(tmp_path_factory.mktemp("cloud-images")) as served:
        for codename in ("noble", "jammy"):
            served.publish(codename, "amd64")
        yield served
