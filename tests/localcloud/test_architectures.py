"""The real CLI on the local cloud for every kind of runner architecture, and a pinned base.

s390x (a runner repository other than actions/runner), armhf (an arm64 VM with the 32-bit
runner) and a base pinned to an Ubuntu cloud image serial, end to end: base image, builder,
verification, copy. The hypervisor is scripted, so what the guest would do with the user-data
is the unit tier's business (app/tests/test_userdata_run.py); this tier proves what the CLI
asks of the clouds: which cloud image it boots, the user-data it renders for that
architecture, and the Glance properties of the images it publishes.
"""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lcloud import cli, guest, mirror
from lcloud.cloud import LocalCloud

FORK = "canonical/github-actions-runner"
SERIAL = "20260715"

pytestmark = pytest.mark.skipif(
    not cli.has_command("build"), reason="the CLI's build command is not on this branch"
)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mirror.CloudImagesMirror]:
    """Cloud images for s390x and arm64 (current), and noble amd64 at a pinned serial."""
    with mirror.serve(tmp_path_factory.mktemp("arch-images")) as served:
        served.publish("noble", "s390x")
        served.publish("noble", "arm64")
        served.publish("noble", "amd64", revision="current")
        served.publish("noble", "amd64", revision="pinned", serial=SERIAL)
        yield served


def _build(
    cloud: LocalCloud,
    images: mirror.CloudImagesMirror,
    prefix: str,
    *extra: str,
    env: dict[str, str] | None = None,
) -> Any:
    cloud.guests([guest.GuestScript(match=prefix, after=1)])
    return cli.run(
        cloud, "build", "--prefix", prefix, "--upload-clouds", LocalCloud.RUNNER_A,
        "--cloud-images-url", images.url, "--timeout", "5m", *extra, env=env,
    )  # fmt: skip


def _builder_user_data(cloud: LocalCloud, prefix: str) -> str:
    """Return the user-data the builder server of this prefix booted with."""
    [path] = [p for p in (cloud.state / "user-data").glob(f"{prefix}-builder-*.sh")]
    return Path(path).read_text()


def _variable(script: str, name: str) -> str:
    match = re.search(rf"^readonly {name}=(.*)$", script, re.M)
    assert match, f"no {name} in the user-data"
    return match.group(1).strip("'")


def _only_image(cloud: LocalCloud, result: Any) -> Any:
    assert result.code == 0, result.stderr
    [entry] = result.json()["images"]
    return cloud.connect(LocalCloud.RUNNER_A).image.get_image(entry["id"]), entry


@pytest.mark.parametrize(
    "case",
    [
        # arch, its image name word, Glance's architecture, the VM's cloud image, the console
        ("s390x", "s390x", "s390x", "s390x", "/dev/ttysclp0"),
        ("armhf", "arm", "aarch64", "arm64", "/dev/ttyAMA0"),
    ],
    ids=["s390x", "armhf"],
)
def test_a_build_of_another_architecture_from_another_runner_repository(
    cloud: LocalCloud, images: mirror.CloudImagesMirror, case: tuple[str, str, str, str, str]
) -> None:
    arch, name_arch, glance, vm_image, console = case
    prefix = f"arch-{name_arch}"
    result = _build(cloud, images, prefix, "--arch", arch, "--runner-binary-repo", FORK)
    image, entry = _only_image(cloud, result)
    assert entry["name"] == image.name == f"{prefix}-noble-{name_arch}"
    assert entry["arch"] == name_arch
    # Glance's architecture is the VM's: an armhf image boots on aarch64 hypervisors.
    assert image.architecture == glance
    assert image.properties["grib_arch"] == name_arch
    assert image.properties["grib_runner_binary_repo"] == FORK
    assert image.properties["grib_verified"] == "true"
    # The builder booted the VM architecture's cloud image...
    build = cloud.connect(LocalCloud.BUILD)
    [base] = [i for i in build.image.images() if i.name == f"{prefix}-base-noble-{vm_image}"]
    assert base.properties["grib_upstream_url"].endswith(
        f"/noble/current/noble-server-cloudimg-{vm_image}.img"
    )
    # ...with the user-data rendered for the runner's architecture and repository.
    script = _builder_user_data(cloud, prefix)
    assert _variable(script, "GRIB_RUNNER_ARCH") == name_arch
    assert _variable(script, "GRIB_RUNNER_REPO") == FORK
    assert _variable(script, "GRIB_CONSOLE") == console
    if arch == "armhf":
        assert _variable(script, "GRIB_FOREIGN_ARCH") == "armhf"
        assert "libc6:armhf" in script and "libicu74:armhf" in script
    else:
        assert "GRIB_FOREIGN_ARCH" not in script
        assert "dotnet-runtime-8.0" in script


def test_an_architecture_upstream_does_not_publish_needs_a_runner_repository(
    cloud: LocalCloud, images: mirror.CloudImagesMirror
) -> None:
    result = _build(cloud, images, "arch-refused", "--arch", "ppc64le")
    assert result.code == 2
    assert "actions/runner publishes no ppc64le runner" in result.stderr
    assert not (cloud.state / "user-data").exists() or not list(
        (cloud.state / "user-data").glob("arch-refused-*")
    )


def test_a_base_pinned_to_a_serial_is_built_from_that_serial(
    cloud: LocalCloud, images: mirror.CloudImagesMirror
) -> None:
    prefix = "pinned"
    result = _build(cloud, images, prefix, "--base", f"noble@{SERIAL}")
    image, entry = _only_image(cloud, result)
    # The image keeps its release's name, so runner charms keep finding it.
    assert entry["name"] == f"{prefix}-noble-x64" and entry["base"] == "noble"
    assert image.properties["grib_base_serial"] == SERIAL
    build = cloud.connect(LocalCloud.BUILD)
    [base] = [i for i in build.image.images() if i.name == f"{prefix}-base-noble-{SERIAL}-amd64"]
    assert base.properties["grib_upstream_serial"] == SERIAL
    assert base.properties["grib_upstream_url"].endswith(
        f"/noble/{SERIAL}/noble-server-cloudimg-amd64.img"
    )
    assert base.id == image.properties["grib_base_image_id"]


def test_an_unknown_serial_fails_naming_it_and_leaves_nothing(
    cloud: LocalCloud, images: mirror.CloudImagesMirror
) -> None:
    prefix = "unpinned"
    result = _build(cloud, images, prefix, "--base", "noble@20260101")
    assert result.code == 1
    [failure] = result.json()["failures"]
    assert failure["step"] == "base-image"
    assert "Ubuntu cloud image serial 20260101 of noble is not at" in failure["error"]
    admin = cloud.connect()
    assert [s for s in admin.compute.servers(all_projects=True) if s.name.startswith(prefix)] == []
    for name in (LocalCloud.BUILD, LocalCloud.RUNNER_A):
        assert [i for i in cloud.connect(name).image.images() if i.name.startswith(prefix)] == []


def test_a_proxy_with_credentials_reaches_the_builder_and_nothing_else(
    cloud: LocalCloud, images: mirror.CloudImagesMirror
) -> None:
    prefix = "proxied"
    proxy = "http://builder:s3cr3t-pw@squid.internal:3128"
    result = _build(cloud, images, prefix, "--arch", "arm64", env={"IMAGE_BUILDER_PROXY": proxy})
    image, _ = _only_image(cloud, result)
    assert _variable(_builder_user_data(cloud, prefix), "GRIB_PROXY") == proxy
    assert "s3cr3t-pw" not in result.stdout + result.stderr
    assert not any("s3cr3t-pw" in str(v) for v in image.properties.values())
    # The verification server is told the image must carry no proxy at all.
    [verify] = list((cloud.state / "user-data").glob(f"{prefix}-verify-*.sh"))
    assert _variable(verify.read_text(), "GRIB_PROXY_EXPECTED") == ""
    assert "s3cr3t-pw" not in verify.read_text()
