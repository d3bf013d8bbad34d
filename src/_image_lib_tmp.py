"""TEMPORARY stand-in for lib/charms/github_runner_image_builder/v0/image.py (same API).

Deleted once the real library lands on main; nothing else may import it but src/image.py.
"""

import json
from collections.abc import Sequence

import ops
import pydantic

_KEYS = (
    "auth_url",
    "password",
    "project_domain_name",
    "project_name",
    "user_domain_name",
    "username",
)


class CloudCredentials(pydantic.BaseModel):
    """The six keys a requirer unit gives."""

    model_config = pydantic.ConfigDict(frozen=True)

    auth_url: str
    password: str
    project_domain_name: str
    project_name: str
    user_domain_name: str
    username: str

    @property
    def cloud_id(self) -> str:
        """Return the cloud's id."""
        return f"{self.project_name}_{self.username}"


class PublishedImage(pydantic.BaseModel):
    """One image as published."""

    model_config = pydantic.ConfigDict(frozen=True)

    id: str
    arch: str
    base: str

    @property
    def tags(self) -> str:
        """Return the tags."""
        return f"{self.arch},{self.base}"


class ImageProvider(ops.Object):
    """Provider side."""

    def __init__(self, charm: ops.CharmBase, relation_name: str = "image") -> None:
        super().__init__(charm, relation_name)
        self._charm = charm
        self._relation_name = relation_name

    def credentials(self, relation: ops.Relation) -> CloudCredentials | None:
        """Return the first complete credentials of a remote unit."""
        for unit in sorted(relation.units, key=lambda u: u.name):
            data = relation.data[unit]
            if all(data.get(key) for key in _KEYS):
                return CloudCredentials(**{key: data[key] for key in _KEYS})
        return None

    def requirer_clouds(self) -> dict[str, CloudCredentials]:
        """Return cloud_id -> credentials over all relations."""
        clouds: dict[str, CloudCredentials] = {}
        for relation in self._charm.model.relations[self._relation_name]:
            creds = self.credentials(relation)
            if creds is not None:
                clouds[creds.cloud_id] = creds
        return clouds

    def publish(self, relation: ops.Relation, images: Sequence[PublishedImage]) -> None:
        """Write id/tags/images to this unit's databag."""
        data = relation.data[self._charm.unit]
        if not images:
            self.clear(relation)
            return
        data["id"] = images[0].id
        data["tags"] = images[0].tags
        data["images"] = json.dumps([{"id": i.id, "tags": i.tags} for i in images])

    def clear(self, relation: ops.Relation) -> None:
        """Remove what publish wrote."""
        data = relation.data[self._charm.unit]
        for key in ("id", "tags", "images"):
            data.pop(key, None)
