"""The `image` relation: requirers' clouds in, each cloud's images from the catalogue out.

Every unit publishes the same data, from the catalogue the leader shares: requirers read
whichever provider unit they find first.
"""

import logging
from collections.abc import Sequence

import ops

from catalogue import Catalogue
from charms.github_runner_image_builder.v0.image import (
    CloudCredentials,
    ImageProvider,
    InvalidDataError,
    ProviderImages,
)

logger = logging.getLogger(__name__)

RELATION_NAME = "image"


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
        """Return a relation's cloud, None when it is not served.

        Not served: no unit gave all six valid keys yet, or an earlier relation owns that
        cloud id with other credentials.
        """
        return self.provider.served_credentials(relation)

    def published_on(self, relation: ops.Relation) -> ProviderImages | None:
        """Return what this unit publishes on a relation (None: nothing readable)."""
        try:
            return ProviderImages.from_databag(relation.data[self._charm.unit])
        except InvalidDataError as exc:
            logger.warning("ignoring unreadable images in relation %s: %s", relation.id, exc)
            return None

    def published_ids(self) -> set[str]:
        """Return every image ID this unit publishes now (a build must not prune them)."""
        ids: set[str] = set()
        for relation in self.relations:
            if current := relation.data[self._charm.unit].get("id"):
                ids.add(current)
            if (published := self.published_on(relation)) is not None:
                ids.update(ref.id for ref in published.images)
        return ids

    def publish(self, catalogue: Catalogue, bases: Sequence[str], arch: str) -> None:
        """Publish each requirer cloud's images; clear relations without credentials.

        A cloud with no image of the current settings yet (e.g. base-image just changed) keeps
        what it has: a requirer is never left without an image while the new one builds.
        """
        for relation in self.relations:
            creds = self.cloud_of(relation)
            if creds is None:
                self.provider.clear(relation)
            elif images := catalogue.published(creds.cloud_id, bases, arch):
                self.provider.publish(relation, images)
