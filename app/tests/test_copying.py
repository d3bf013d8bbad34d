"""Tests of copying an image to several clouds at once."""

import pytest

from app.tests.fakes import FakeCloud, qcow2
from github_runner_image_builder.cloud.client import ImageInfo
from github_runner_image_builder.images import copying


def source_cloud(size: int = 5 * 1024 * 1024 + 3) -> tuple[FakeCloud, ImageInfo]:
    cloud = FakeCloud("build")
    image_id = cloud.add_image("p-noble-x64", qcow2(size))
    return cloud, cloud.image_info[image_id]


def test_copies_arrive_identical_with_properties() -> None:
    build, source = source_cloud()
    targets = {"a": FakeCloud("a"), "b": FakeCloud("b")}
    results = copying.copy_image(
        build, source, targets, properties={"os_distro": "ubuntu"}, chunk=64 * 1024, depth=2
    )
    for name, target in targets.items():
        copy = results[name]
        assert isinstance(copy, ImageInfo)
        assert target.image_data[copy.id] == build.image_data[source.id]
        assert target.image_info[copy.id].properties == {"os_distro": "ubuntu"}
        assert target.image_info[copy.id].name == "p-noble-x64"
    assert build.calls.count("download_image") == 1  # read once for every target


def test_a_copy_with_the_wrong_checksum_is_deleted() -> None:
    build, source = source_cloud(1000)
    good, bad = FakeCloud("good"), FakeCloud("bad")
    bad.corrupt_uploads = True
    results = copying.copy_image(build, source, {"good": good, "bad": bad}, properties={})
    assert isinstance(results["good"], ImageInfo)
    assert isinstance(results["bad"], copying.CopyError)
    assert "differs" in str(results["bad"]) or "bytes" in str(results["bad"])
    assert bad.image_info == {}


def test_a_failed_upload_leaves_nothing_and_others_succeed() -> None:
    build, source = source_cloud(1000)
    good, broken = FakeCloud("good"), FakeCloud("broken")
    broken.fail["upload_image:after-read"] = RuntimeError("HTTP 413")
    results = copying.copy_image(build, source, {"good": good, "broken": broken}, properties={})
    assert isinstance(results["good"], ImageInfo)
    assert str(results["broken"]) == "HTTP 413"
    assert broken.image_info == {}


def test_no_targets_no_download() -> None:
    build, source = source_cloud(10)
    assert copying.copy_image(build, source, {}, properties={}) == {}
    assert "download_image" not in build.calls


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": "saving"}, "copy is saving"),
        ({"size": 1}, "copy has 1 bytes"),
        ({"checksum": "0"}, "checksum 0 differs"),
        ({"hash_value": "0"}, "sha512 differs"),
    ],
)
def test_verify_copy(change: dict[str, object], message: str) -> None:
    _, source = source_cloud(10)
    import dataclasses

    with pytest.raises(copying.CopyError, match=message):
        copying.verify_copy(source, dataclasses.replace(source, **change))  # type: ignore[arg-type]
    copying.verify_copy(source, source)
