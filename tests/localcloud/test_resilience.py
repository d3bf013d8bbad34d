"""The real CLI riding out a busy cloud, and cancelled mid-build: nothing left in any cloud."""

import json
import signal
import subprocess
import threading
import time
from typing import Any

import pytest

from lcloud import cli, guest, mirror
from lcloud.cloud import LocalCloud

ALL_CLOUDS = (LocalCloud.BUILD, *LocalCloud.UPLOAD_CLOUDS)
BUILD = LocalCloud.BUILD

pytestmark = pytest.mark.skipif(
    not cli.has_command("build"), reason="the CLI's build command is not on this branch yet"
)


def _argv(images: mirror.CloudImagesMirror, prefix: str, bases: str = "noble") -> list[str]:
    return cli.build_args(prefix, images.url, "--boot-retry-delay", "1-2", bases=bases)


def _left(cloud: LocalCloud, prefix: str) -> dict[str, list[Any]]:
    """Everything of `prefix` in every cloud but the base images a build keeps on purpose."""
    admin = cloud.connect()
    left: dict[str, list[Any]] = {
        "servers": [
            s.name for s in admin.compute.servers(all_projects=True) if s.name.startswith(prefix)
        ],
        "groups": [g.name for g in admin.network.security_groups() if g.name.startswith(prefix)],
        "images": [],
    }
    for name in ALL_CLOUDS:
        for image in cloud.connect(name).image.images():
            if image.name.startswith(prefix) and not image.name.startswith(f"{prefix}-base-"):
                left["images"].append((name, image.name, image.status))
    return left


def _nothing() -> dict[str, list[Any]]:
    return {"servers": [], "groups": [], "images": []}


@pytest.mark.parametrize(
    ("proxy", "fault"),
    [
        (f"nova-{BUILD}", "503 3"),
        (f"neutron-{BUILD}", "reset 2"),
        (f"glance-{BUILD}", "503 3"),
        ("keystone", "503 2"),
    ],
)
def test_a_transient_error_is_retried_and_the_build_succeeds(
    cloud: LocalCloud, images: mirror.CloudImagesMirror, proxy: str, fault: str
) -> None:
    prefix = "transient"
    cloud.guests([guest.GuestScript(match=prefix, after=0.5)])
    cloud.set_fault(proxy, fault)
    result = cli.run(cloud, *_argv(images, prefix))
    assert result.code == 0, result.stderr
    assert result.json()["failures"] == []
    assert guest.fault(cloud.state, proxy) is None, "the fault never hit the CLI"
    assert "retrying in" in result.stderr
    for line in result.stderr.splitlines():
        if "retrying in" in line:
            assert " WARNING " in line
    assert _left(cloud, prefix)["servers"] == []


def test_a_persistent_error_fails_cleanly_naming_the_step_and_error(
    cloud: LocalCloud, images: mirror.CloudImagesMirror
) -> None:
    cloud.set_fault(f"neutron-{BUILD}", "503")
    result = cli.run(cloud, *_argv(images, "persistent"))
    cloud.set_fault(f"neutron-{BUILD}", None)
    assert result.code == 1
    [failure] = result.json()["failures"]
    assert failure["step"] == "security-group"
    assert "503" in failure["error"]
    assert result.stderr.count("create security group persistent-builder") >= 4
    assert _left(cloud, "persistent") == _nothing()


def test_no_valid_host_boots_again_and_the_build_succeeds(
    cloud: LocalCloud, images: mirror.CloudImagesMirror
) -> None:
    cloud.guests([guest.GuestScript(match="rebooted", after=0.5, no_valid_host=1)])
    result = cli.run(cloud, *_argv(images, "rebooted"))
    assert result.code == 0, result.stderr
    assert result.stderr.count("No valid host was found") == 1
    assert "booting again in" in result.stderr
    spawned = [e for e in cloud.events() if e["name"].startswith("rebooted")]
    assert len([e for e in spawned if e["event"] == "spawn"]) == 1  # the third boot ran
    assert _left(cloud, "rebooted")["servers"] == []


def test_no_valid_host_three_times_fails_cleanly(
    cloud: LocalCloud, images: mirror.CloudImagesMirror
) -> None:
    cloud.guests([guest.GuestScript(match="nohost", after=0.5, no_valid_host=3)])
    result = cli.run(cloud, *_argv(images, "nohost"))
    assert result.code == 1
    [failure] = result.json()["failures"]
    assert failure["step"] == "server"
    assert "No valid host was found" in failure["error"]
    assert "(boot 3 of 3)" in failure["error"]
    assert _left(cloud, "nohost") == _nothing()


def test_sigterm_mid_wait_and_mid_copy_leaves_nothing_in_any_cloud(
    cloud: LocalCloud, images: mirror.CloudImagesMirror
) -> None:
    prefix = "cancel"
    cloud.guests(
        [
            guest.GuestScript(match=f"{prefix}-builder-noble", outcome="hang"),
            guest.GuestScript(match=f"{prefix}-builder-jammy", after=0.5, image_size=256 << 20),
        ]
    )
    argv = _argv(images, prefix, bases="noble,jammy")
    argv[argv.index("--upload-clouds") + 1] = f"{LocalCloud.RUNNER_A},{LocalCloud.RUNNER_B}"
    process = cli.start(cloud, *argv)
    assert process.stderr is not None
    lines: list[str] = []
    copying = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "jammy-x64 copy:" in line:
                copying.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert copying.wait(240), "".join(lines)
        time.sleep(0.3)  # the copy is streaming now
        process.send_signal(signal.SIGTERM)
        stdout = process.stdout.read() if process.stdout else ""
        code = process.wait(120)
    finally:
        if process.poll() is None:
            cli.sigkill(process)
    reader.join(10)
    for pipe in (process.stdout, process.stderr):
        if pipe:
            pipe.close()
    stderr = "".join(lines)
    assert code == 1, stderr
    report = json.loads(stdout)
    assert report["images"] == []
    failures = {(f["base"], f["step"], f["error"]) for f in report["failures"]}
    assert failures == {("noble", "wait", "cancelled"), ("jammy", "copy", "cancelled")}, stderr
    assert "SIGTERM: cancelling every build" in stderr
    assert _left(cloud, prefix) == _nothing()


def test_the_cli_exits_on_sigint_too(cloud: LocalCloud, images: mirror.CloudImagesMirror) -> None:
    cloud.guests([guest.GuestScript(match="interrupted", outcome="hang")])
    process = cli.start(cloud, *_argv(images, "interrupted"))
    try:
        deadline = time.monotonic() + 180
        admin = cloud.connect()
        while not [
            s
            for s in admin.compute.servers(all_projects=True)
            if s.name.startswith("interrupted") and s.status == "ACTIVE"
        ]:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the builder never booted"
            time.sleep(0.5)
        # Nova's ACTIVE reaches the CLI at its poller's next 1 s tick: give it a few, so the
        # signal lands in the wait step and not still in the server step.
        time.sleep(3)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        cli.sigkill(process)
        raise
    assert process.returncode == 1, stderr
    assert [(f["step"], f["error"]) for f in json.loads(stdout)["failures"]] == [
        ("wait", "cancelled")
    ]
    assert _left(cloud, "interrupted") == _nothing()
