"""Which image revision is current, which to prune, and what a crashed build left behind.

Pure decisions over plain records; the cloud calls that list and delete live in `cloud.py`.
"""

import dataclasses
import datetime
from collections.abc import Collection, Sequence


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One Glance image as far as revisions are concerned."""

    id: str
    name: str
    status: str
    created_at: str  # ISO 8601 from Glance; compares correctly as text (all UTC, same format)


@dataclasses.dataclass(frozen=True)
class ServerRecord:
    """One Nova server as far as clean-up is concerned."""

    id: str
    name: str
    created_at: str = ""  # ISO 8601 from Nova


@dataclasses.dataclass(frozen=True)
class GroupRecord:
    """One Neutron security group as far as clean-up is concerned."""

    id: str
    name: str
    created_at: str = ""  # ISO 8601 from Neutron


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
    """Return the active images called `name` beyond the `keep` newest, never a protected ID."""
    if keep < 1:
        raise ValueError("keep must be at least 1: the image just built is always kept")
    active = _newest_first([i for i in images if i.name == name and i.status == "active"])
    return [i for i in active[keep:] if i.id not in protect]


# The kinds of temporary servers and security groups a build names `<prefix>-<kind>-…`: the
# builder and the verification's test server.
TEMPORARY_KINDS: tuple[str, ...] = ("builder", "verify")


def temporary(prefix: str, name: str) -> bool:
    """Whether a server or security group name is one of a build's temporary resources."""
    return name.startswith(tuple(f"{prefix}-{kind}-" for kind in TEMPORARY_KINDS))


# Glance statuses an upload or snapshot passes through; left alone they never finish.
UNFINISHED_IMAGE_STATUSES = frozenset({"queued", "saving", "importing", "uploading", "killed"})


def leftovers(
    prefix: str,
    images: Sequence[ImageRecord],
    servers: Sequence[ServerRecord],
    groups: Sequence[GroupRecord],
    protect: Collection[str] = (),
    *,
    cutoff: datetime.datetime | None = None,
) -> tuple[list[ImageRecord], list[ServerRecord], list[GroupRecord]]:
    """Return what `clean` deletes: our builder servers and security groups, stuck images.

    With a cutoff, only what was created before it: a build still running (here or on another
    unit with the same prefix) owns younger resources.

    Builder and test servers and groups are named `<prefix>-builder-…` and `<prefix>-verify-…`
    (TEMPORARY_KINDS); an image of ours is any image
    whose name starts with `<prefix>-`. Active images are never touched here: pruning them is
    `build`'s job, with the revision count and the protected IDs.
    """
    stuck = [
        i
        for i in images
        if i.name.startswith(f"{prefix}-")
        and i.status in UNFINISHED_IMAGE_STATUSES
        and i.id not in protect
        and created_before(i.created_at, cutoff)
    ]
    return (
        stuck,
        [s for s in servers if temporary(prefix, s.name) and created_before(s.created_at, cutoff)],
        [g for g in groups if temporary(prefix, g.name) and created_before(g.created_at, cutoff)],
    )
