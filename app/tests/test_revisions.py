"""Tests of which revision is current, which to prune and what clean deletes."""

import datetime

import pytest

from github_runner_image_builder.images import revisions as rev
from github_runner_image_builder.images.revisions import GroupRecord, ImageRecord, ServerRecord


def image(i: int, status: str = "active", name: str = "p-noble-x64") -> ImageRecord:
    return ImageRecord(f"id{i}", name, status, f"2026-01-0{i}T00:00:00Z")


IMAGES = [image(3), image(1), image(5, "queued"), image(4), image(2), image(6, name="other")]


def test_latest_is_the_newest_active_of_that_name() -> None:
    assert rev.latest(IMAGES, "p-noble-x64") == "id4"
    assert rev.latest(IMAGES, "p-noble-x64", any_status=True) == "id5"
    assert rev.latest(IMAGES, "p-jammy-x64") is None


def test_prune_keeps_the_newest_active() -> None:
    assert [i.id for i in rev.to_prune(IMAGES, "p-noble-x64", 2, set())] == ["id2", "id1"]


def test_prune_never_deletes_a_protected_image() -> None:
    assert [i.id for i in rev.to_prune(IMAGES, "p-noble-x64", 1, {"id1", "id3"})] == ["id2"]


def test_prune_with_fewer_than_keep_deletes_nothing() -> None:
    assert rev.to_prune(IMAGES, "p-noble-x64", 10, set()) == []


def test_prune_never_deletes_an_image_another_builder_made() -> None:
    foreign = ImageRecord("canonical", "p-noble-x64", "active", "2025-12-01T00:00:00Z", ours=False)
    doomed = rev.to_prune([foreign, *IMAGES], "p-noble-x64", 1, set())
    assert [i.id for i in doomed] == ["id3", "id2", "id1"]


def test_prune_orders_same_second_images_stably() -> None:
    same = [ImageRecord("b", "n", "active", "t"), ImageRecord("a", "n", "active", "t")]
    assert [i.id for i in rev.to_prune(same, "n", 1, set())] == ["a"]


def test_keep_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        rev.to_prune(IMAGES, "p-noble-x64", 0, set())


def test_leftovers_only_ours_and_only_unfinished_images() -> None:
    images = [
        image(1, "queued"),
        image(2, "saving", "p-base-noble-amd64"),
        image(3, "active"),
        image(4, "queued", "q-noble-x64"),
        image(5, "killed", "p-jammy-x64"),
        image(6, "saving", "p-noble-x64"),
    ]
    servers = [ServerRecord("s1", "p-builder-noble-x64-ab"), ServerRecord("s2", "web")]
    groups = [GroupRecord("g1", "p-builder-noble-x64-ab"), GroupRecord("g2", "default")]
    stuck, dead_servers, dead_groups = rev.leftovers(
        rev.Sweep("p", {"id6"}), images, servers, groups
    )
    assert [i.id for i in stuck] == ["id1", "id2", "id5"]
    assert dead_servers == [servers[0]]
    assert dead_groups == [groups[0]]


def test_leftovers_with_a_cutoff_spare_what_a_running_build_owns() -> None:
    cutoff = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)
    old, new = "2026-01-01T09:00:00Z", "2026-01-01T12:30:00Z"
    images = [
        rev.ImageRecord("i-old", "p-noble-x64", "queued", old),
        rev.ImageRecord("i-new", "p-noble-x64", "saving", new),
    ]
    servers = [
        ServerRecord("s-old", "p-builder-a", old),
        ServerRecord("s-new", "p-builder-b", new),
        ServerRecord("s-naive", "p-builder-c", "2026-01-01T11:00:00"),  # no zone: UTC
        ServerRecord("s-unknown", "p-builder-d", ""),  # unreadable: never deleted
    ]
    groups = [GroupRecord("g-old", "p-builder-a", old), GroupRecord("g-new", "p-builder-b", new)]
    stuck, dead_servers, dead_groups = rev.leftovers(
        rev.Sweep("p", cutoff=cutoff), images, servers, groups
    )
    assert [i.id for i in stuck] == ["i-old"]
    assert [s.id for s in dead_servers] == ["s-old", "s-naive"]
    assert [g.id for g in dead_groups] == ["g-old"]


def test_an_upload_cloud_sweep_takes_only_our_unfinished_images() -> None:
    # A requirer's project: its own servers and groups may share our prefix, and an image of
    # our name without our properties is someone else's upload.
    images = [
        rev.ImageRecord("ours-queued", "p-noble-x64", "queued", "", ours=True),
        rev.ImageRecord("ours-active", "p-noble-x64", "active", "", ours=True),
        rev.ImageRecord("theirs-queued", "p-noble-x64", "queued", "", ours=False),
    ]
    servers = [ServerRecord("s1", "p-builder-x")]
    groups = [GroupRecord("g1", "p-builder-x")]
    sweep = rev.Sweep("p", upload_cloud=True)
    stuck, dead_servers, dead_groups = rev.leftovers(sweep, images, servers, groups)
    assert [i.id for i in stuck] == ["ours-queued"]
    assert dead_servers == [] and dead_groups == []


def test_a_build_id_sweep_takes_that_build_whatever_its_age() -> None:
    cutoff = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)
    new = "2026-01-01T12:30:00Z"
    images = [
        rev.ImageRecord("i-mine", "p-noble-x64", "saving", new, build_id="b1"),
        rev.ImageRecord("i-other", "p-noble-x64", "saving", new, build_id="b2"),
        rev.ImageRecord("i-untagged", "p-noble-x64", "saving", "2020-01-01T00:00:00Z"),
        rev.ImageRecord("i-done", "p-noble-x64", "active", new, build_id="b1"),
    ]
    servers = [
        ServerRecord("s-mine", "p-builder-a", new, build_id="b1"),
        ServerRecord("s-other", "p-builder-b", new, build_id="b2"),
        ServerRecord("s-foreign", "web", new, build_id="b1"),
    ]
    groups = [
        GroupRecord("g-mine", "p-verify-a", new, build_id="b1"),
        GroupRecord("g-other", "p-verify-b", new),
    ]
    sweep = rev.Sweep("p", build_id="b1", cutoff=cutoff)
    stuck, dead_servers, dead_groups = rev.leftovers(sweep, images, servers, groups)
    assert [i.id for i in stuck] == ["i-mine"]
    assert [s.id for s in dead_servers] == ["s-mine"]
    assert [g.id for g in dead_groups] == ["g-mine"]
    upload = rev.Sweep("p", build_id="b1", upload_cloud=True)
    stuck, dead_servers, dead_groups = rev.leftovers(upload, images, servers, groups)
    assert [i.id for i in stuck] == ["i-mine"] and dead_servers == [] and dead_groups == []


def test_a_group_description_carries_the_build_id() -> None:
    description = rev.group_description("builder: no ingress", "b-1")
    assert rev.group_build_id(description) == "b-1"
    assert rev.group_description("builder: no ingress", None) == "builder: no ingress"
    assert rev.group_build_id("builder: no ingress") == ""
