"""The `copy` command: the build cloud's current image reaches new clouds without a build."""

import json

import pytest

from app.tests.fakes import FakeCloud, qcow2
from github_runner_image_builder import cli
from github_runner_image_builder.images import revisions
from image_builder_contract import names

NAME = "p-noble-x64"
OURS = {revisions.BUILT_BY_US: "2026-01-01T00:00:00Z", "grib_base": "noble", "os_distro": "ubuntu"}


def run_copy(
    clouds: dict[str, FakeCloud], capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, list[dict[str, object]]]]:
    argv = ["--os-cloud=build", "copy", "--prefix=p", "--upload-clouds=new,late", *extra]
    code = cli.main(argv, env={}, deps=cli.Deps(open_cloud=clouds.__getitem__))
    return code, json.loads(capsys.readouterr().out)


def test_the_newest_image_of_ours_is_copied_with_our_properties(
    capsys: pytest.CaptureFixture[str],
) -> None:
    build, new, late = FakeCloud("build"), FakeCloud("new"), FakeCloud("late")
    build.add_image(NAME, qcow2(2000), properties=OURS)
    current = build.add_image(NAME, qcow2(3000), properties={**OURS, "stores": "file"})
    # Newer, but not ours (no build-time property): never a source.
    build.add_image(NAME, qcow2(100), properties={"os_distro": "ubuntu"})
    code, report = run_copy({"build": build, "new": new, "late": late}, capsys)
    assert code == 0
    assert report["failures"] == []
    assert sorted(str(i["cloud"]) for i in report["images"]) == ["late", "new"]
    for image in report["images"]:
        target = {"new": new, "late": late}[str(image["cloud"])]
        copy = target.image_info[str(image["id"])]
        assert (image["name"], image["base"], image["arch"]) == (NAME, "noble", "x64")
        assert target.image_data[copy.id] == build.image_data[current]
        assert copy.properties == OURS  # ours only, not Glance's bookkeeping
    assert "snapshot_server" not in build.calls and "create_server" not in build.calls


def test_no_image_in_the_build_cloud_says_a_build_is_needed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clouds = {"build": FakeCloud("build"), "new": FakeCloud("new"), "late": FakeCloud("late")}
    code, report = run_copy(clouds, capsys)
    assert code == 1
    assert report["images"] == []
    assert {(f["cloud"], f["step"]) for f in report["failures"]} == {
        ("new", names.COPY_NO_SOURCE),
        ("late", names.COPY_NO_SOURCE),
    }


def test_one_failing_cloud_does_not_stop_the_other(capsys: pytest.CaptureFixture[str]) -> None:
    build, new, late = FakeCloud("build"), FakeCloud("new"), FakeCloud("late")
    build.add_image(NAME, qcow2(2000), properties=OURS)
    late.fail["upload_image"] = RuntimeError("401 Unauthorized")
    code, report = run_copy({"build": build, "new": new, "late": late}, capsys)
    assert code == 1
    assert [i["cloud"] for i in report["images"]] == ["new"]
    assert [(f["cloud"], f["step"]) for f in report["failures"]] == [("late", "copy")]
    assert late.image_info == {}


def test_copy_needs_upload_clouds(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--os-cloud=build", "copy"], env={})
    assert exit_.value.code == 2
