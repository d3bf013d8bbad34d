"""Which image revision is current, which to prune, and what a crashed build left behind.

Pure decisions over plain records; the cloud calls that list and delete live in `cloud/client.py`.
"""

import dataclasses
import datetime
import re
from collections.abc import Collection, Sequence

from github_runner_image_builder.images import properties
from image_builder_contract import names

BUILT_BY_US = properties.BUILT_BY_US  # an image without it is never pruned here
# Security groups carry the build id at the end of their description (GROUP_TAG).
BUILD_ID = properties.BUILD_ID
GROUP_TAG = re.compile(r"; grib_build_id=([A-Za-z0-9-]{1,64})$")


def group_description(what: str, build_id: str | None) -> str:
    """Return a security group's description, tagged with the build id when there is one."""
    return f"{what}; {BUILD_ID}={build_id}" if build_id else what


def group_build_id(description: str) -> str:
    """Return the build id a security group's description carries ("" for none)."""
    match = GROUP_TAG.search(description)
    return match.group(1) if match else ""


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One Glance image as far as revisions are concerned."""

    id: str
    name: str
    status: str
    created_at: str  # ISO 8601 from Glance; compares correctly as text (all UTC, same format)
    ours: bool = True  # built by this CLI (carries BUILT_BY_US)
    build_id: str = ""  # the build that made it (BUILD_ID), "" when untagged


@dataclasses.dataclass(frozen=True)
class ServerRecord:
    """One Nova server as far as clean-up is concerned."""

    id: str
    name: str
    created_at: str = ""  # ISO 8601 from Nova
    build_id: str = ""  # its BUILD_ID metadata


@dataclasses.dataclass(frozen=True)
class GroupRecord:
    """One Neutron security group as far as clean-up is concerned."""

    id: str
    name: str
    created_at: str = ""  # ISO 8601 from Neutron
    build_id: str = ""  # from its description (group_build_id)


def created_before(created_at: str, cutoff: datetime.datetime | None) -> bool:
    """Whether a resource is older than `cutoff` (always, without one).

    A missing or unreadable time counts as new: when in doubt, never delete.
    """
    if cutoff is None:
        return True
    try:
        created = datetime.datetime.fromisoformat(created_at)
    except ValueError:
        return False
    if created.tzinfo is None:  # Nova and Neutron report UTC without a zone at times
        created = created.replace(tzinfo=datetime.timezone.utc)
    return created < cutoff


def _newest_first(images: Sequence[ImageRecord]) -> list[ImageRecord]:
    # Creation time first, then ID, so two images created in the same second order stably.
    return sorted(images, key=lambda i: (i.created_at, i.id), reverse=True)


def latest(images: Sequence[ImageRecord], name: str, any_status: bool = False) -> str | None:
    """Return the ID of the newest image called `name` (active only unless `any_status`)."""
    candidates = [i for i in images if i.name == name and (any_status or i.status == "active")]
    ordered = _newest_first(candidates)
    return ordered[0].id if ordered else None


def to_prune(
    images: Sequence[ImageRecord], name: str, keep: int, protect: Collection[str]
) -> list[ImageRecord]:
    """Return our active images called `name` beyond the `keep` newest, never a protected ID.

    Only images this CLI built count and go: another builder's images of the same name are
    not ours to delete.
    """
    if keep < 1:
        raise ValueError("keep must be at least 1: the image just built is always kept")
    active = _newest_first(
        [i for i in images if i.name == name and i.status == "active" and i.ours]
    )
    return [i for i in active[keep:] if i.id not in protect]


def temporary(prefix: str, name: str) -> bool:
    """Whether a server or security group name is one of a build's temporary resources."""
    return name.startswith(names.temporary_prefixes(prefix))


# Glance statuses an upload or snapshot passes through; left alone they never finish.
UNFINISHED_IMAGE_STATUSES = frozenset({"queued", "saving", "importing", "uploading", "killed"})


@dataclasses.dataclass(frozen=True)
class Sweep:
    """What one `clean` may delete.

    `upload_cloud`: a cloud where no builder ever runs (a requirer's project): only unfinished
    images this CLI uploaded (they carry BUILT_BY_US), never a server or a security group.
    `build_id`: only that build's resources, whatever their age (the build is known dead).
    `cutoff`: only what was created before it (by the cloud's clock); a build still running,
    here or on another unit with the same prefix, owns younger resources.
    """

    prefix: str
    protect: Collection[str] = ()
    upload_cloud: bool = False
    build_id: str | None = None
    cutoff: datetime.datetime | None = None

    def _old(self, created_at: str) -> bool:
        return self.build_id is not None or created_before(created_at, self.cutoff)

    def _of_build(self, build_id: str) -> bool:
        return self.build_id is None or build_id == self.build_id

    def image(self, image: ImageRecord) -> bool:
        """Whether `clean` deletes this image."""
        return (
            image.name.startswith(f"{self.prefix}-")
            and image.status in UNFINISHED_IMAGE_STATUSES
            and image.id not in self.protect
            and (image.ours or not self.upload_cloud)
            and self._of_build(image.build_id)
            and self._old(image.created_at)
        )

    def temporary(self, name: str, build_id: str, created_at: str) -> bool:
        """Whether `clean` deletes this server or security group."""
        return (
            not self.upload_cloud
            and temporary(self.prefix, name)
            and self._of_build(build_id)
            and self._old(created_at)
        )


def leftovers(
    sweep: Sweep,
    images: Sequence[ImageRecord],
    servers: Sequence[ServerRecord],
    groups: Sequence[GroupRecord],
) -> tuple[list[ImageRecord], list[ServerRecord], list[GroupRecord]]:
    """Return what `clean` deletes: builder servers and security groups, stuck images.

    Builder and test servers and groups are named `<prefix>-builder-…` and `<prefix>-verify-…`
    (names.TEMPORARY_KINDS); in the build cloud an image of ours is any image whose name
    starts with `<prefix>-`, in an upload cloud only one that also carries our properties.
    Active images are never touched here: pruning them is `build`'s job, with the revision
    count and the protected IDs.
    """
    return (
        [i for i in images if sweep.image(i)],
        [s for s in servers if sweep.temporary(s.name, s.build_id, s.created_at)],
        [g for g in groups if sweep.temporary(g.name, g.build_id, g.created_at)],
    )
