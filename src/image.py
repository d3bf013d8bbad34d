"""The `image` relation: requirers' clouds in, image IDs out, and the catalogue between them.

The catalogue maps each cloud to the newest image ID of every (base, arch); a build's result is
merged into it, so a failed build leaves the previous IDs in place.
"""

import logging
from collections.abc import Iterable, Mapping, Sequence

import ops

from build_job import BuiltImage
from charms.github_runner_image_builder.v0.image import (
    CloudCredentials,
    ImageProvider,
    InvalidDataError,
    ProviderImages,
    PublishedImage,
)

logger = logging.getLogger(__name__)

RELATION_NAME = "image"
Catalogue = dict[str, dict[str, str]]  # cloud id -> "base/arch" -> image ID


def key(base: str, arch: str) -> str:
    """Return the catalogue key of one (base, arch)."""
    return f"{base}/{arch}"


def merge(catalogue: Mapping[str, Mapping[str, str]], images: Iterable[BuiltImage]) -> Catalogue:
    """Return the catalogue with newly built images replacing older ones."""
    merged = {cloud: dict(ids) for cloud, ids in catalogue.items()}
    for image in images:
        merged.setdefault(image.cloud, {})[key(image.base, image.arch)] = image.id
    return merged


def settle(
    catalogue: Mapping[str, Mapping[str, str]], bases: Sequence[str], arch: str
) -> Catalogue:
    """Return the catalogue without images of old settings in clouds that have all current ones.

    Until a cloud has an image of every configured base, its old images stay (still published,
    so still protected from pruning).
    """
    wanted = {key(base, arch) for base in bases}
    return {
        cloud: {k: v for k, v in ids.items() if k in wanted} if wanted <= ids.keys() else dict(ids)
        for cloud, ids in catalogue.items()
    }


def images_for(
    catalogue: Mapping[str, Mapping[str, str]], cloud: str, bases: Sequence[str], arch: str
) -> list[PublishedImage]:
    """Return a cloud's images for the configured bases, in the operator's order."""
    ids = catalogue.get(cloud, {})
    return [
        PublishedImage(id=ids[key(base, arch)], arch=arch, base=base)
        for base in bases
        if key(base, arch) in ids
    ]


def missing(
    catalogue: Mapping[str, Mapping[str, str]], cloud: str, bases: Sequence[str], arch: str
) -> list[str]:
    """Return the bases a cloud has no image of yet."""
    ids = catalogue.get(cloud, {})
    return [base for base in bases if key(base, arch) not in ids]


class ImageRelation:
    """Reads requirers' credentials and publishes image IDs on every relation."""

    def __init__(self, charm: ops.CharmBase) -> None:
        self._charm = charm
        self.provider = ImageProvider(charm, RELATION_NAME)

    @property
    def relations(self) -> list[ops.Relation]:
        """Return the live image relations."""
        return list(self._charm.model.relations[RELATION_NAME])

    def clouds(self) -> dict[str, CloudCredentials]:
        """Return every requirer cloud that gave all six credential keys."""
        return self.provider.requirer_clouds()

    def cloud_of(self, relation: ops.Relation) -> CloudCredentials | None:
        """Return a relation's cloud, None until a unit gave all six keys."""
        return self.provider.credentials(relation)

    def published_ids(self) -> set[str]:
        """Return every image ID this unit publishes now (a build must not prune them)."""
        ids: set[str] = set()
        for relation in self.relations:
            data = relation.data[self._charm.unit]
            if data.get("id"):
                ids.add(data["id"])
            try:
                published = ProviderImages.from_databag(data)
            except InvalidDataError as exc:
                logger.warning("ignoring unreadable images in relation %s: %s", relation.id, exc)
                continue
            if published is not None:
                ids.update(ref.id for ref in published.images)
        return ids

    def publish(
        self, catalogue: Mapping[str, Mapping[str, str]], bases: Sequence[str], arch: str
    ) -> None:
        """Publish each requirer cloud's images; clear relations without credentials.

        A cloud with no image of the current settings yet (e.g. base-image just changed) keeps
        what it has: a requirer is never left without an image while the new one builds.
        """
        for relation in self.relations:
            creds = self.cloud_of(relation)
            if creds is None:
                self.provider.clear(relation)
            elif images := images_for(catalogue, creds.cloud_id, bases, arch):
                self.provider.publish(relation, images)
