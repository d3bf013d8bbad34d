"""The real CLI, as a subprocess, against the local cloud: builds, revisions, faults, bad input."""

import hashlib
import io
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from lcloud import builds, cli, guest, mirror, qcow2
from lcloud.cloud import LocalCloud

UPLOAD_CLOUDS = (LocalCloud.RUNNER_A, LocalCloud.RUNNER_B)
ALL_CLOUDS = (LocalCloud.BUILD, *UPLOAD_CLOUDS)

pytestmark = pytest.mark.skipif(
    not cli.has_command("build"),
    reason="the CLI's build command is not on this branch yet (git merge main)",
)


def _build(
    cloud: LocalCloud,
    images: mirror.CloudImagesMirror,
    prefix: str,
    *extra: str,
    bases: str = "noble",
    upload: tuple[str, ...] = (LocalCloud.RUNNER_A,),
) -> cli.Result:
    return cli.run(cloud, *cli.build_args(prefix, images.url, *extra, bases=bases, upload=upload))


def _named(conn: Any, name: str) -> list[Any]:
    return [i for i in conn.image.images() if i.name == name]


def _servers(cloud: LocalCloud, prefix: str) -> list[Any]:
    admin = cloud.connect()
    return [s for s in admin.compute.servers(all_projects=True) if s.name.startswith(prefix)]


GROUPS = [
    "builder",
    "verify",
]  # the groups a build makes: the test server's while the builder runs


def _groups(cloud: LocalCloud, prefix: str) -> list[str]:
    admin = cloud.connect()
    return [g.name for g in admin.network.security_groups() if g.name.startswith(prefix)]


def _group_kinds(groups: list[str], prefix: str) -> list[str]:
    """Return the kinds of `clean`'s "<id> <prefix>-<kind>-…" group lines, sorted."""
    return sorted(g.split()[1].removeprefix(f"{prefix}-").split("-")[0] for g in groups)


def _not_active(cloud: LocalCloud, prefix: str) -> list[tuple[str, str, str]]:
    left = []
    for name in ALL_CLOUDS:
        for image in cloud.connect(name).image.images():
            if image.name.startswith(prefix) and image.status != "active":
                left.append((name, image.name, image.status))
    return left


def test_init_then_parallel_build_of_two_bases_into_two_clouds(
    cloud: LocalCloud, images: mirror.CloudImagesMirror
) -> None:
    prefix = "e2e"
    cloud.guests([guest.GuestScript(match=prefix, after=3)])
    init = cli.run(
        cloud, "init", "--prefix", prefix, "--base", "noble,jammy", "--arch", "x64",
        "--cloud-images-url", images.url,
    )  # fmt: skip
    assert init.code == 0, init.stderr
    assert {b["base"] for b in init.json()["base_images"]} == {"noble", "jammy"}

    result = _build(cloud, images, prefix, bases="noble,jammy", upload=UPLOAD_CLOUDS)

    assert result.code == 0, result.stderr
    report = result.json()
    assert report["failures"] == []
    built = {(i["base"], i["cloud"]): i for i in report["images"]}
    assert set(built) == {(b, c) for b in ("noble", "jammy") for c in UPLOAD_CLOUDS}
    upstream = {
        codename: hashlib.sha256(
            (images.root / codename / "current" / f"{codename}-server-cloudimg-amd64.img")
            .read_bytes()
        ).hexdigest()
        for codename in ("noble", "jammy")
    }  # fmt: skip
    for base, version in (("noble", "24.04"), ("jammy", "22.04")):
        copies = []
        for cloud_name in UPLOAD_CLOUDS:
            entry = built[(base, cloud_name)]
            assert entry["name"] == f"{prefix}-{base}-x64"
            conn = cloud.connect(cloud_name)
            image = conn.image.get_image(entry["id"])
            assert image.status == "active"
            assert image.name == f"{prefix}-{base}-x64"
            assert image.architecture == "x86_64"
            assert image.os_distro == "ubuntu"
            assert image.os_version == version
            assert image.properties["grib_base"] == base
            # Verified first: the test server's software report is on every copy.
            assert image.properties["grib_verified"] == "true"
            assert image.properties["grib_sw_kernel"] == "6.8.0-localcloud"
            assert image.properties["grib_sw_os"] == entry["software"]["os"]
            assert "fresh-instance" in image.properties["grib_checks"]
            assert {c["name"]: c["ok"] for c in entry["checks"]}["secrets"] is True
            data = conn.image.download_image(image).content
            assert hashlib.new(image.hash_algo, data).hexdigest() == image.hash_value
            copies.append((image.hash_value, image.checksum, image.size))
            # The bytes come from a builder booted from this base's upstream image.
            payload = qcow2.read_payload(io.BytesIO(data))
            assert payload["base_image_sha256"] == upstream[base]
            assert payload["server_name"].startswith(prefix)
        assert copies[0] == copies[1], "the two clouds got different bytes"
    assert _servers(cloud, prefix) == []
    assert _not_active(cloud, prefix) == []
    # Parallel, not one after the other: both builders were up before either powered off.
    events = [e for e in cloud.events() if e["name"].startswith(prefix)]
    spawned = [e["time"] for e in events if e["event"] == "spawn"]
    stopped = [e["time"] for e in events if e["event"] == "poweroff"]
    assert len(spawned) == len(stopped) == 2
    assert max(spawned) < min(stopped)
    # Each image's test server booted after its builder stopped, and is gone.
    verified = [e for e in events if e["event"] == "verify-spawn"]
    assert len(verified) == 2
    assert min(e["time"] for e in verified) > min(stopped)
    assert all(e["name"].startswith(f"{prefix}-verify-") for e in verified)


def test_copy_gives_a_new_cloud_the_build_clouds_image_without_a_build(
    cloud: LocalCloud, images: mirror.CloudImagesMirror
) -> None:
    prefix = "cp"
    cloud.guests([guest.GuestScript(match=prefix, after=2)])
    built = _build(cloud, images, prefix, upload=(LocalCloud.BUILD, LocalCloud.RUNNER_A))
    assert built.code == 0, built.stderr
    source_id = next(i["id"] for i in built.json()["images"] if i["cloud"] == LocalCloud.BUILD)
    spawned = len([e for e in cloud.events() if e["event"] == "spawn"])

    copied = cli.run(
        cloud, "copy", f"--prefix={prefix}", "--base=noble", "--arch=x64",
        f"--upload-clouds={LocalCloud.RUNNER_B}",
    )  # fmt: skip

    assert copied.code == 0, copied.stderr
    [image] = copied.json()["images"]
    assert (image["cloud"], image["name"]) == (LocalCloud.RUNNER_B, f"{prefix}-noble-x64")
    source = cloud.connect(LocalCloud.BUILD).image.get_image(source_id)
    copy = cloud.connect(LocalCloud.RUNNER_B).image.get_image(image["id"])
    assert (copy.status, copy.hash_value, copy.size) == ("active", source.hash_value, source.size)
    assert copy.properties["grib_verified"] == "true"
    assert copy.properties["grib_build_time"] == source.properties["grib_build_time"]
    assert len([e for e in cloud.events() if e["event"] == "spawn"]) == spawned  # no build
    # A name the build cloud has no image of: step `find`, a build is needed.
    missing = cli.run(
        cloud, "copy", f"--prefix={prefix}", "--base=jammy", "--arch=x64",
        f"--upload-clouds={LocalCloud.RUNNER_B}",
    )  # fmt: skip
    assert missing.code == 1
    assert [f["step"] for f in missing.json()["failures"]] == ["find"]


def test_latest_build_id_by_creation_order_and_any_status(cloud: LocalCloud) -> None:
    conn = cloud.connect(LocalCloud.BUILD)
    name = "latest-noble-x64"
    path = builds.fake_cloud_image(cloud.state / "latest.qcow2", "noble", "amd64")
    older = builds.upload_base(conn, name, path)
    time.sleep(1.1)  # Glance's created_at has whole seconds: make the order unambiguous
    newer = builds.upload_base(conn, name, path)
    time.sleep(1.1)
    queued = conn.image.create_image(
        name=name, disk_format="qcow2", container_format="bare", allow_duplicates=True
    )
    assert conn.image.get_image(queued.id).status == "queued"

    active = cli.run(cloud, "latest-build-id", name)
    anything = cli.run(cloud, "latest-build-id", name, "--any-status")
    missing = cli.run(cloud, "latest-build-id", "no-such-image")

    assert (active.code, active.stdout.strip()) == (0, newer.id)
    assert (anything.code, anything.stdout.strip()) == (0, queued.id)
    assert (missing.code, missing.stdout.strip()) == (0, "")
    for image in (older, newer, queued):
        conn.image.delete_image(image)


def test_prune_keeps_the_newest_revisions_and_protected_ones(
    cloud: LocalCloud, images: mirror.CloudImagesMirror, tmp_path: Path
) -> None:
    prefix = "prune"
    cloud.guests([guest.GuestScript(match=prefix, after=0.5)])
    # An image of the same name that another builder made (Canonical's charm names its images
    # alike): it carries none of our properties, so it is never pruned, however old.
    path = builds.fake_cloud_image(tmp_path / "foreign.qcow2", "noble", "amd64")
    foreign = builds.upload_base(cloud.connect(LocalCloud.RUNNER_A), f"{prefix}-noble-x64", path)
    time.sleep(1.1)
    ids: list[str] = []
    for _ in range(4):
        protect = ["--protect", ids[0]] if ids else []
        result = _build(cloud, images, prefix, "--keep-revisions", "2", *protect)
        assert result.code == 0, result.stderr
        ids.append(result.json()["images"][0]["id"])
        time.sleep(1.1)  # distinct created_at seconds, so "newest" is well defined
    left = {i.id for i in _named(cloud.connect(LocalCloud.RUNNER_A), f"{prefix}-noble-x64")}
    assert left == {ids[0], ids[2], ids[3], foreign.id}
    cloud.connect(LocalCloud.RUNNER_A).image.delete_image(foreign)


# --- faults: each one fails the build (exit 1, named), leaves nothing, keeps the last image ---


@pytest.fixture(scope="module")
def previous(local_cloud: LocalCloud, images: mirror.CloudImagesMirror) -> dict[str, str]:
    """A good build before the faults: {cloud: image id} of fault-noble-x64."""
    local_cloud.guests([guest.GuestScript(match="fault", after=0.5)])
    result = _build(local_cloud, images, "fault", upload=UPLOAD_CLOUDS)
    assert result.code == 0, result.stderr
    return {i["cloud"]: i["id"] for i in result.json()["images"]}


def _assert_failed_cleanly(
    cloud: LocalCloud, result: cli.Result, previous: dict[str, str], step: str, where: str
) -> dict[str, Any]:
    assert result.code == 1, result.stderr
    report: dict[str, Any] = result.json()
    named = [f for f in report["failures"] if f["step"] == step and f["cloud"] == where]
    assert named, f"no {step} failure in {where}: {report['failures']}"
    assert _servers(cloud, "fault") == []
    assert _not_active(cloud, "fault") == []
    for cloud_name, image_id in previous.items():
        assert cloud.connect(cloud_name).image.get_image(image_id).status == "active"
    if where == LocalCloud.BUILD:
        # The operator reading the log (stderr) learns it too, not only the JSON's reader.
        # (For an upload cloud see test_a_failed_upload_cloud_is_named_on_stderr.)
        said = [line for line in result.errors() if step in line]
        assert said, f"stderr names no {step} failure:\n{result.stderr}"
    return report


def test_glance_5xx_in_one_upload_cloud(
    cloud: LocalCloud, images: mirror.CloudImagesMirror, previous: dict[str, str]
) -> None:
    cloud.guests([guest.GuestScript(match="fault", after=0.5)])
    cloud.set_fault(f"glance-{LocalCloud.RUNNER_B}", "503-upload")
    result = _build(cloud, images, "fault", upload=UPLOAD_CLOUDS)
    report = _assert_failed_cleanly(cloud, result, previous, "copy", LocalCloud.RUNNER_B)
    # The healthy cloud still got its image.
    assert [i["cloud"] for i in report["images"]] == [LocalCloud.RUNNER_A]


def test_a_failed_upload_cloud_is_named_on_stderr(
    cloud: LocalCloud, images: mirror.CloudImagesMirror, previous: dict[str, str]
) -> None:
    cloud.guests([guest.GuestScript(match="fault", after=0.5)])
    cloud.set_fault(f"glance-{LocalCloud.RUNNER_B}", "down")
    result = _build(cloud, images, "fault", upload=UPLOAD_CLOUDS)
    assert result.code == 1
    assert [line for line in result.errors() if LocalCloud.RUNNER_B in line], result.stderr


def test_nova_refusing_the_server(
    cloud: LocalCloud, images: mirror.CloudImagesMirror, previous: dict[str, str]
) -> None:
    admin = cloud.connect()
    project = admin.identity.find_project("build", ignore_missing=False)
    admin.compute.update_quota_set(project, instances=0)
    try:
        result = _build(cloud, images, "fault")
    finally:
        admin.compute.update_quota_set(project, instances=10)
    report = _assert_failed_cleanly(cloud, result, previous, "server", LocalCloud.BUILD)
    assert report["images"] == []


def test_snapshot_failing(
    cloud: LocalCloud, images: mirror.CloudImagesMirror, previous: dict[str, str]
) -> None:
    cloud.guests([guest.GuestScript(match="fault", after=0.5, snapshot_fails=True)])
    result = _build(cloud, images, "fault")
    _assert_failed_cleanly(cloud, result, previous, "snapshot", LocalCloud.BUILD)


def test_guest_failing_at_a_step(
    cloud: LocalCloud, images: mirror.CloudImagesMirror, previous: dict[str, str]
) -> None:
    cloud.guests([guest.GuestScript(match="fault", after=0.5, outcome="fail", step="runner")])
    result = _build(cloud, images, "fault")
    report = _assert_failed_cleanly(cloud, result, previous, "wait", LocalCloud.BUILD)
    assert any("runner" in f["error"] for f in report["failures"])


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (
            guest.GuestScript(
                match="fault",
                after=0.5,
                verify="fail",
                verify_failures={"docker": "daemon not active", "tools": "yq not on PATH"},
            ),
            "docker: daemon not active; tools: yq not on PATH",
        ),
        (guest.GuestScript(match="fault", after=0.5, verify="hang"), "timed out"),
        (
            guest.GuestScript(match="fault", after=0.5, verify="no-marker"),
            "without a verification result",
        ),
    ],
    ids=["failed-checks", "hang", "no-marker"],
)
def test_an_image_failing_verification_is_deleted_and_never_copied(
    cloud: LocalCloud,
    images: mirror.CloudImagesMirror,
    previous: dict[str, str],
    script: guest.GuestScript,
    expected: str,
) -> None:
    cloud.guests([script])
    name = "fault-noble-x64"
    before = {c: {i.id for i in _named(cloud.connect(c), name)} for c in ALL_CLOUDS}
    result = _build(cloud, images, "fault", "--verify-timeout", "20s", upload=UPLOAD_CLOUDS)
    report = _assert_failed_cleanly(cloud, result, previous, "verify", LocalCloud.BUILD)
    assert report["images"] == []
    [failure] = report["failures"]
    assert expected in failure["error"]
    if script.verify == "fail":
        failed = {c["name"]: c["detail"] for c in failure["checks"] if not c["ok"]}
        assert failed == script.verify_failures
    # The new image is gone and no cloud got a copy: each holds what it held before.
    for cloud_name in ALL_CLOUDS:
        assert {i.id for i in _named(cloud.connect(cloud_name), name)} == before[cloud_name]
    booted = [e for e in cloud.events() if e["event"] == "verify-spawn"]
    assert booted and booted[-1]["name"].startswith("fault-verify-noble-x64-")


def test_keystone_unreachable_mid_build(
    cloud: LocalCloud, images: mirror.CloudImagesMirror, previous: dict[str, str]
) -> None:
    # Keystone goes away once the builder boots: the upload cloud cannot authenticate.
    down = guest.GuestScript(match="fault", after=0.5, faults_on_boot={"keystone": "down"})
    cloud.guests([down])
    result = _build(cloud, images, "fault")
    cloud.set_fault("keystone", None)
    _assert_failed_cleanly(cloud, result, previous, "copy", LocalCloud.RUNNER_A)


def _sigkill_once_booted(
    cloud: LocalCloud, images: mirror.CloudImagesMirror, prefix: str, *extra: str
) -> None:
    """Start a build whose guest hangs; SIGKILL the CLI once its builder is ACTIVE."""
    cloud.guests([guest.GuestScript(match=prefix, outcome="hang")])
    process = cli.start(cloud, *cli.build_args(prefix, images.url, *extra))
    try:
        deadline = time.monotonic() + 180
        while not [s for s in _servers(cloud, prefix) if s.status == "ACTIVE"]:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the builder never booted"
            time.sleep(0.5)
    finally:
        cli.sigkill(process)


def test_sigkill_mid_build_then_clean_then_build(
    cloud: LocalCloud, images: mirror.CloudImagesMirror
) -> None:
    prefix = "killed"
    _sigkill_once_booted(cloud, images, prefix)
    assert _servers(cloud, prefix), "a SIGKILLed build leaves its builder behind"

    # The charm's sweep before each build spares what a live build may own (younger than the
    # cutoff), read from the real Nova/Neutron/Glance creation times.
    spared = cli.run(cloud, "clean", "--prefix", prefix, "--older-than", "1h")
    assert spared.code == 0, spared.stderr
    assert spared.json()["servers"] == [] and spared.json()["security_groups"] == []
    assert _servers(cloud, prefix), "a young builder must survive a sweep with a cutoff"
    time.sleep(2)

    cleaned = cli.run(cloud, "clean", "--prefix", prefix, "--older-than", "1s")

    assert cleaned.code == 0, cleaned.stderr
    assert len(cleaned.json()["servers"]) == 1
    # The builder's group, and the test server's if the build lived to make it.
    assert _group_kinds(cleaned.json()["security_groups"], prefix) in (["builder"], GROUPS)
    assert _servers(cloud, prefix) == [] and _groups(cloud, prefix) == []
    cloud.guests([guest.GuestScript(match=prefix, after=0.5)])
    again = _build(cloud, images, prefix)
    assert again.code == 0, again.stderr
    assert _not_active(cloud, prefix) == []


# --- bad input: one clear line each ---


@pytest.fixture
def wrong_password(cloud: LocalCloud, tmp_path: Path) -> dict[str, str]:
    config = yaml.safe_load(cloud.clouds_yaml.read_text())
    config["clouds"][LocalCloud.BUILD]["auth"]["password"] = "not-the-password"  # noqa: S105
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump(config))
    return {"OS_CLIENT_CONFIG_FILE": str(path)}


@pytest.mark.parametrize(
    ("case", "args", "expected"),
    [
        ("unknown cloud", ["--os-cloud", "no-such-cloud"], "no-such-cloud"),
        ("flavor too small", ["--flavor", "m1.tiny"], "m1.tiny"),
        ("no such network", ["--network", "no-such-net"], "no-such-net"),
    ],
)
def test_bad_input_gets_one_clear_line(
    cloud: LocalCloud, images: mirror.CloudImagesMirror, case: str, args: list[str], expected: str
) -> None:
    result = _build(cloud, images, "bad", *args)
    assert result.code != 0, case
    errors = result.errors()
    assert len(errors) == 1, f"{case}: {result.stderr}"
    assert expected in errors[0]
    assert _servers(cloud, "bad") == []


def test_wrong_password_gets_one_clear_line(
    cloud: LocalCloud, images: mirror.CloudImagesMirror, wrong_password: dict[str, str]
) -> None:
    result = cli.run(
        cloud, "build", "--prefix", "bad", "--cloud-images-url", images.url, env=wrong_password
    )
    assert result.code != 0
    errors = result.errors()
    assert len(errors) == 1, result.stderr
    assert "401" in errors[0] or "auth" in errors[0].lower()
    assert "not-the-password" not in result.stderr


# --- sweeps: only what is ours, judged by the cloud ---


def test_an_upload_cloud_sweep_spares_the_requirers_own_resources(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    # A requirer's project: a server and a group that happen to carry our builder prefix, and
    # an unfinished image of our name it made itself. Only our own unfinished upload goes.
    prefix = "homesweep"
    conn = cloud.connect(LocalCloud.RUNNER_A)
    cloud.guests([guest.GuestScript(match=prefix, outcome="hang")])
    path = tmp_path / "disk.qcow2"
    qcow2.write(path, {"guest": "theirs"})
    disk = conn.image.create_image(
        f"{prefix}-disk", data=path.read_bytes(), disk_format="qcow2", container_format="bare",
        wait=True,
    )  # fmt: skip
    group = conn.network.create_security_group(name=f"{prefix}-builder-x")
    flavor = conn.compute.find_flavor("m1.builder", ignore_missing=False)
    network = conn.network.find_network("localcloud-net", ignore_missing=False)
    server = conn.compute.create_server(
        name=f"{prefix}-builder-x", image_id=disk.id, flavor_id=flavor.id,
        networks=[{"uuid": network.id}], security_groups=[{"name": group.id}],
    )  # fmt: skip
    theirs = conn.image.create_image(
        f"{prefix}-noble-x64", disk_format="qcow2", container_format="bare", wait=False
    )
    ours = conn.image.create_image(
        f"{prefix}-noble-x64", disk_format="qcow2", container_format="bare", wait=False,
        grib_build_time="2026-01-01T00:00:00Z",
    )  # fmt: skip
    try:
        conn.compute.wait_for_server(server, status="ACTIVE", wait=120)
        assert conn.image.get_image(ours.id).status == "queued"
        time.sleep(2)
        swept = cli.run(
            cloud, "clean", "--prefix", prefix, "--older-than", "1s", "--upload-cloud",
            os_cloud=LocalCloud.RUNNER_A,
        )  # fmt: skip
        assert swept.code == 0, swept.stderr
        assert swept.json() == {
            "servers": [],
            "security_groups": [],
            "images": [f"{ours.id} {prefix}-noble-x64 (queued)"],
            "errors": [],
        }
        assert conn.compute.find_server(server.id, ignore_missing=False)
        assert conn.network.find_security_group(group.id, ignore_missing=False)
        assert {i.id for i in _named(conn, f"{prefix}-noble-x64")} == {theirs.id}
    finally:
        conn.compute.delete_server(server.id, ignore_missing=True)
        conn.compute.wait_for_delete(server, wait=120)
        conn.network.delete_security_group(group.id, ignore_missing=True)
        for image_id in (theirs.id, ours.id, disk.id):
            conn.image.delete_image(image_id, ignore_missing=True)


def test_clean_by_build_id_takes_a_dead_builds_young_builder_at_once(
    cloud: LocalCloud, images: mirror.CloudImagesMirror
) -> None:
    prefix = "deadbuild"
    _sigkill_once_booted(cloud, images, prefix, "--build-id", "run-7")
    [server] = _servers(cloud, prefix)
    assert server.metadata["grib_build_id"] == "run-7"

    # Another build's id takes nothing; this build's takes its young builder and group now.
    other = cli.run(cloud, "clean", "--prefix", prefix, "--older-than", "3h", "--build-id", "x")
    assert other.code == 0, other.stderr
    assert other.json()["servers"] == [] and len(_servers(cloud, prefix)) == 1
    cleaned = cli.run(
        cloud, "clean", "--prefix", prefix, "--older-than", "3h", "--build-id", "run-7"
    )
    assert cleaned.code == 0, cleaned.stderr
    assert cleaned.json()["servers"] == [f"{server.id} {server.name}"]
    assert _group_kinds(cleaned.json()["security_groups"], prefix) in (["builder"], GROUPS)
    assert _servers(cloud, prefix) == []
