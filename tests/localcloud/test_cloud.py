"""The local cloud itself: clouds, resources, the scripted guest, snapshots, faults, clean-up.

These talk to the services with openstacksdk directly, as the CLI does, so a failure here is
the cloud's and not the CLI's.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openstack
import pytest
import yaml

from github_runner_image_builder.guest import marker
from lcloud import builds, guest
from lcloud.cloud import LocalCloud


@pytest.fixture(scope="module")
def base(local_cloud: LocalCloud, tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = builds.fake_cloud_image(tmp_path_factory.mktemp("img") / "b.qcow2", "noble", "amd64")
    return builds.upload_base(local_cloud.connect(LocalCloud.BUILD), "base-noble", path)


def _nonce() -> str:
    return marker.new_nonce()


def test_clouds_yaml_names_three_clouds_that_work(cloud: LocalCloud) -> None:
    clouds = yaml.safe_load(cloud.clouds_yaml.read_text())["clouds"]
    assert {LocalCloud.BUILD, LocalCloud.RUNNER_A, LocalCloud.RUNNER_B} <= set(clouds)
    assert cloud.clouds_yaml.stat().st_mode & 0o077 == 0
    projects = set()
    config = openstack.config.OpenStackConfig(config_files=[str(cloud.clouds_yaml)])
    for name in (LocalCloud.BUILD, LocalCloud.RUNNER_A, LocalCloud.RUNNER_B):
        # Strictly what the written file says: this is what the CLI will read.
        conn = openstack.connection.Connection(config=config.get_one(cloud=name))
        projects.add(conn.current_project_id)
        assert isinstance(list(conn.image.images()), list)
    assert len(projects) == 3


def test_build_cloud_has_flavors_and_a_network(cloud: LocalCloud) -> None:
    conn = cloud.connect(LocalCloud.BUILD)
    flavors = {f.name: f for f in conn.compute.flavors()}
    builder = flavors["m1.builder"]
    assert (builder.vcpus, builder.ram, builder.disk) == (2, 1024, 20)
    assert any(f.vcpus < 2 or f.ram < 1024 for f in flavors.values())
    networks = list(conn.network.networks())
    assert [n.name for n in networks] == ["localcloud-net"]
    assert list(conn.network.subnets(network_id=networks[0].id))


def test_guest_succeeds_and_snapshot_proves_its_server(cloud: LocalCloud, base: Any) -> None:
    conn = cloud.connect(LocalCloud.BUILD)
    nonce = _nonce()
    server = builds.boot(conn, "grib-ok", base.id, builds.user_data(nonce))
    server = builds.wait_status(conn, server, "SHUTOFF")
    assert server.status == "SHUTOFF"
    assert marker.parse_console(builds.console(conn, server), nonce) == marker.Marker(True)
    image = builds.snapshot(conn, server, "grib-ok-image")
    assert image is not None and image.disk_format == "qcow2"
    payload = builds.payload(conn, image)
    source = hashlib.sha256(conn.image.download_image(base).content).hexdigest()
    assert payload["server_id"] == server.id
    assert payload["nonce"] == nonce
    assert payload["base_image_sha256"] == source
    expected = hashlib.sha256(builds.user_data(nonce).encode()).hexdigest()
    assert payload["user_data_sha256"] == expected
    conn.image.delete_image(image)
    builds.delete(conn, server)


def test_guest_fails_at_named_step(cloud: LocalCloud, base: Any) -> None:
    cloud.guests([guest.GuestScript(match="grib-fail", outcome="fail", step="apt", after=0.5)])
    conn = cloud.connect(LocalCloud.BUILD)
    nonce = _nonce()
    server = builds.wait_status(
        conn, builds.boot(conn, "grib-fail-1", base.id, builds.user_data(nonce)), "SHUTOFF"
    )
    text = builds.console(conn, server)
    assert marker.failure_line(nonce, "apt") in text
    assert marker.parse_console(text, nonce) == marker.Marker(False, "apt")
    builds.delete(conn, server)


def test_guest_error_at_boot_puts_server_in_error(cloud: LocalCloud, base: Any) -> None:
    cloud.guests([guest.GuestScript(match="grib-err", outcome="error")])
    conn = cloud.connect(LocalCloud.BUILD)
    server = builds.wait_status(
        conn, builds.boot(conn, "grib-err-1", base.id, builds.user_data(_nonce())), "ACTIVE"
    )
    assert server.status == "ERROR"
    builds.delete(conn, server)


def test_hanging_guest_never_reports_nor_stops(cloud: LocalCloud, base: Any) -> None:
    cloud.guests([guest.GuestScript(match="grib-hang", outcome="hang", after=0.2)])
    conn = cloud.connect(LocalCloud.BUILD)
    nonce = _nonce()
    server = builds.wait_status(
        conn, builds.boot(conn, "grib-hang-1", base.id, builds.user_data(nonce)), "ACTIVE"
    )
    # A succeeding guest scripted with after=0.2 would be SHUTOFF by now; this one must not be.
    ok = builds.wait_status(
        conn, builds.boot(conn, "grib-ok-2", base.id, builds.user_data(_nonce())), "SHUTOFF"
    )
    server = conn.compute.get_server(server.id)
    assert server.status == "ACTIVE"
    assert marker.parse_console(builds.console(conn, server), nonce) is None
    builds.delete(conn, server)
    builds.delete(conn, ok)


def test_snapshot_failure_leaves_no_image(cloud: LocalCloud, base: Any) -> None:
    cloud.guests([guest.GuestScript(match="grib-snapfail", snapshot_fails=True, after=0.2)])
    conn = cloud.connect(LocalCloud.BUILD)
    server = builds.boot(conn, "grib-snapfail-1", base.id, builds.user_data(_nonce()))
    try:
        server = builds.wait_status(conn, server, "SHUTOFF")
        assert builds.snapshot(conn, server, "grib-snapfail-image") is None
        assert [i for i in conn.image.images() if i.name == "grib-snapfail-image"] == []
    finally:
        builds.delete(conn, server)  # the next tests count the project's servers


def test_twenty_create_snapshot_delete_cycles_in_a_row(cloud: LocalCloud, base: Any) -> None:
    """The sqlite "database is locked" flake is gone: 20 full builder lives pass in a row."""
    conn = cloud.connect(LocalCloud.BUILD)
    cloud.guests([guest.GuestScript(match="grib-cycle", after=0.2)])
    for index in range(20):
        nonce = _nonce()
        result = builds.cycle(conn, base.id, f"grib-cycle-{index}", nonce)
        assert result.status == "SHUTOFF", f"cycle {index}: {result.status}"
        assert result.payload is not None, f"cycle {index}: snapshot failed"
        assert result.payload["nonce"] == nonce
        assert marker.parse_console(result.console, nonce) == marker.Marker(True)
    assert not list(conn.compute.servers())
    assert not [i for i in conn.image.images() if i.name.startswith("grib-cycle")]
    errors = (cloud.service_logs() / "nova-app.log").read_text(errors="replace")
    assert "database is locked" not in errors


def test_glance_503_hits_only_the_faulty_cloud(cloud: LocalCloud, tmp_path: Path) -> None:
    path = builds.fake_cloud_image(tmp_path / "x.qcow2", "jammy", "amd64")
    cloud.set_fault(f"glance-{LocalCloud.RUNNER_B}", "503-upload")
    healthy = cloud.connect(LocalCloud.RUNNER_A)
    faulty = cloud.connect(LocalCloud.RUNNER_B)
    good = builds.upload_base(healthy, "grib-503-ok", path)
    assert good.status == "active"
    with pytest.raises(openstack.exceptions.HttpException) as caught:
        builds.upload_base(faulty, "grib-503-bad", path)
    assert caught.value.status_code == 503
    # The image record is made before the data upload fails; openstacksdk deletes it again.
    left = [i for i in faulty.image.images() if i.name == "grib-503-bad"]
    assert left == []
    cloud.set_fault(f"glance-{LocalCloud.RUNNER_B}", "503")
    with pytest.raises(openstack.exceptions.SDKException):
        list(cloud.connect(LocalCloud.RUNNER_B).image.images())
    cloud.set_fault(f"glance-{LocalCloud.RUNNER_B}", None)
    healthy.image.delete_image(good)


def test_keystone_down_makes_authentication_fail(cloud: LocalCloud) -> None:
    cloud.set_fault("keystone", "down")
    with pytest.raises(openstack.exceptions.SDKException):
        cloud.connect(LocalCloud.BUILD).authorize()
    cloud.set_fault("keystone", None)
    assert cloud.connect(LocalCloud.BUILD).authorize()


def test_guest_can_take_keystone_down_mid_build(cloud: LocalCloud, base: Any) -> None:
    cloud.guests([guest.GuestScript(match="grib-kdown", faults_on_boot={"keystone": "down"})])
    conn = cloud.connect(LocalCloud.BUILD)
    conn.authorize()
    server = builds.boot(conn, "grib-kdown-1", base.id, builds.user_data(_nonce()))
    # Nova checks tokens with Keystone directly, so the already-authenticated client goes on.
    server = builds.wait_status(conn, server, "SHUTOFF")
    with pytest.raises(openstack.exceptions.SDKException):
        cloud.connect(LocalCloud.RUNNER_A).authorize()
    cloud.set_fault("keystone", None)
    builds.delete(conn, server)


def test_nova_refuses_a_server_over_quota(cloud: LocalCloud, base: Any) -> None:
    admin = cloud.connect()
    project = admin.identity.find_project("build", ignore_missing=False)
    admin.compute.update_quota_set(project, instances=0)
    conn = cloud.connect(LocalCloud.BUILD)
    try:
        with pytest.raises(openstack.exceptions.HttpException) as caught:
            builds.boot(conn, "grib-quota", base.id, builds.user_data(_nonce()))
        assert caught.value.status_code == 403
    finally:
        admin.compute.update_quota_set(project, instances=10)


def test_services_die_with_a_sigkilled_owner() -> None:
    """A process that starts a cloud and is SIGKILLed leaves no service running."""
    script = (
        "import os, sys\n"
        "from lcloud.cloud import LocalCloud\n"
        "with LocalCloud.start() as c:\n"
        "    print(' '.join(map(str, c.pids())), flush=True)\n"
        "    sys.stdin.read()\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent / "harness"))
    owner = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stdin=subprocess.PIPE, env=env
    )
    assert owner.stdout is not None
    pids = [int(p) for p in owner.stdout.readline().split()]
    alive = [pid for pid in pids if _alive(pid)]
    assert len(alive) >= 5  # the five servers (setup steps have finished)
    owner.send_signal(signal.SIGKILL)
    owner.communicate()  # reaps it and closes its pipes
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in alive) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [pid for pid in alive if _alive(pid)] == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
