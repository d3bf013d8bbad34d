"""Charm library for the `github_runner_image_v0` interface (image IDs for runner charms).

The requirer (a charm that boots runners, e.g. github-runner) writes the OpenStack credentials of
its cloud into its unit databag; the provider (github-runner-image-builder) builds images, uploads
them to that cloud and writes their IDs into its own unit databag. See docs/reference/relation.md.

Provider::

    self.image = ImageProvider(self)                    # endpoint "image"
    creds = self.image.credentials(relation)            # CloudCredentials | None
    self.image.publish(relation, [PublishedImage(id="...", arch="x64", base="noble")])

Requirer::

    self.image = ImageRequirer(self)
    self.image.publish_credentials(relation, CloudCredentials(auth_url=..., ...))
    self.framework.observe(self.image.on.image_changed, self._on_image_changed)
    # event.image.id, event.image.tags, event.image.images; or self.image.image(relation)
"""

import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import ops
import pydantic

# The unique Charmhub library identifier, never change it.
LIBID = "5d0f6a1c8b2e4c3fa9d7e1b04c6a2f18"
# Increment this major API version when introducing breaking changes.
LIBAPI = 0
# Increment this PATCH version before using `charmcraft publish-lib` or reset to 0 if you are
# raising the major API version.
LIBPATCH = 3

PYDEPS = ["pydantic>=2"]

logger = logging.getLogger(__name__)

CREDENTIAL_KEYS = (
    "auth_url",
    "password",
    "project_domain_name",
    "project_name",
    "user_domain_name",
    "username",
)
# Keys the provider owns in its unit databag; `id` and `tags` are what older requirers read.
IMAGE_KEYS = ("id", "tags", "images")

_NonEmpty = pydantic.Field(min_length=1)
# arch and base are joined with a comma into `tags`, so neither may hold one.
_Word = pydantic.Field(pattern=r"^[A-Za-z0-9._-]+$")

# Bounds of what a requirer may write (characters): Keystone's own limit for names, and a few
# KB for a URL and a password, far above any real one and far below what a command line, a log
# line or a hook can carry.
NAME_LIMIT = 255
URL_LIMIT = 2048
PASSWORD_LIMIT = 4096
# The most characters of a JSON value this library parses from a databag (the provider's
# `images`, a few hundred bytes per image); larger or deeper is refused as malformed.
JSON_LIMIT = 64 * 1024


def _printable(value: str) -> str:
    """Refuse control characters (NUL, newline, escape, ...): relation data is only data."""
    if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in value):
        raise ValueError("it contains a control character (NUL, newline, tab, ...)")
    return value


_Printable = pydantic.AfterValidator(_printable)
_Name = Annotated[str, pydantic.Field(min_length=1, max_length=NAME_LIMIT), _Printable]
_Url = Annotated[str, pydantic.Field(max_length=URL_LIMIT, pattern=r"^https?://\S+$"), _Printable]
_Password = Annotated[
    str, pydantic.Field(min_length=1, max_length=PASSWORD_LIMIT, repr=False), _Printable
]


def load_json(text: str, limit: int = JSON_LIMIT) -> Any:
    """Parse JSON from relation data: bounded in size, never raising RecursionError.

    Raises:
        InvalidDataError: too long, too deeply nested, or not JSON.

    """
    if len(text) > limit:
        raise InvalidDataError(f"{len(text)} characters of JSON, more than the {limit} allowed")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidDataError(f"not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise InvalidDataError("JSON nested too deeply") from None


def _readable(name: str) -> str:
    """Return a name cut to a short run of characters that are safe in a cloud id.

    Never with a leading '-' or '.': a cloud id is a word, never read as an option or a path.
    """
    return re.sub(r"[^A-Za-z0-9.-]+", "-", name)[:32].lstrip("-.")


class InvalidDataError(ValueError):
    """Relation data that does not follow the interface; the message names the bad keys."""


def _describe(exc: pydantic.ValidationError) -> str:
    """Name each bad field and why, without the input values (they may hold a password)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'data'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False)
    )


class CloudCredentials(pydantic.BaseModel):
    """The requirer's OpenStack credentials: its unit databag, all six keys required."""

    model_config = pydantic.ConfigDict(frozen=True)

    auth_url: _Url
    password: _Password
    project_domain_name: _Name
    project_name: _Name
    user_domain_name: _Name
    username: _Name

    @property
    def cloud_id(self) -> str:
        """The cloud's name in clouds.yaml; units with the same credentials share it.

        Unique per cloud: the project and user names for people to read, then a digest of the
        auth URL, both domains and both names, so two regions or two OpenStacks whose project
        and user names match never share an entry. Never holds a comma (a list separator).
        """
        facts = (
            self.auth_url.rstrip("/"),
            self.project_domain_name,
            self.project_name,
            self.user_domain_name,
            self.username,
        )
        digest = hashlib.sha256("\n".join(facts).encode()).hexdigest()[:12]
        return f"{_readable(self.project_name)}_{_readable(self.username)}_{digest}"

    @property
    def legacy_cloud_id(self) -> str:
        """The id before LIBPATCH 2 (and in Canonical's charm): project and user names only."""
        return f"{self.project_name}_{self.username}"

    @classmethod
    def from_databag(cls, data: Mapping[str, str]) -> "CloudCredentials":
        """Parse a requirer unit databag (extra keys are ignored).

        Raises:
            InvalidDataError: a key is missing or invalid; the message never holds the password.

        """
        missing = [key for key in CREDENTIAL_KEYS if key not in data]
        if missing:
            raise InvalidDataError(f"missing credential keys: {', '.join(missing)}")
        try:
            return cls.model_validate({key: data[key] for key in CREDENTIAL_KEYS})
        except pydantic.ValidationError as exc:
            raise InvalidDataError(f"invalid credentials: {_describe(exc)}") from None

    def to_databag(self) -> dict[str, str]:
        """Return the six keys as the requirer writes them."""
        return self.model_dump()


class PublishedImage(pydantic.BaseModel):
    """One image the provider built: its ID in the requirer's cloud, its arch and base."""

    model_config = pydantic.ConfigDict(frozen=True)

    id: str = _NonEmpty
    arch: str = _Word  # GitHub's words: x64, arm64
    base: str = _Word  # a codename: noble, jammy

    @property
    def tags(self) -> str:
        """The labels a runner booted from this image carries, e.g. `x64,noble`."""
        return f"{self.arch},{self.base}"


class ImageRef(pydantic.BaseModel):
    """One entry of the provider's `images` list, as a requirer sees it."""

    model_config = pydantic.ConfigDict(frozen=True)

    id: str = _NonEmpty
    tags: str


class ProviderImages(pydantic.BaseModel):
    """The provider's unit databag: the current image and every image built for this cloud."""

    model_config = pydantic.ConfigDict(frozen=True)

    id: str = _NonEmpty
    tags: str
    images: tuple[ImageRef, ...]

    @pydantic.field_validator("images")
    @classmethod
    def _not_empty(cls, images: tuple[ImageRef, ...]) -> tuple[ImageRef, ...]:
        # A validator, not min_length, so a bad entry is not also reported as "too short".
        if not images:
            raise ValueError("the list is empty; a provider with no image clears all its keys")
        return images

    @classmethod
    def from_published(cls, images: Sequence[PublishedImage]) -> "ProviderImages":
        """Build the databag for these images; the first one gives `id` and `tags`."""
        if not images:
            raise ValueError("at least one image is needed to publish")
        refs = tuple(ImageRef(id=image.id, tags=image.tags) for image in images)
        return cls(id=refs[0].id, tags=refs[0].tags, images=refs)

    @classmethod
    def from_databag(cls, data: Mapping[str, str]) -> "ProviderImages | None":
        """Parse a provider unit databag; None while it holds no `id` yet.

        A provider that writes only `id` and `tags` (older versions) gives a list of one image.

        Raises:
            InvalidDataError: the data is malformed; the message says which key and why.

        """
        if not data.get("id"):
            return None
        if "tags" not in data:
            raise InvalidDataError("tags: missing; a provider writes it next to `id`")
        raw: dict[str, Any] = {"id": data["id"], "tags": data["tags"]}
        if "images" in data:
            try:
                raw["images"] = load_json(data["images"])
            except InvalidDataError as exc:
                raise InvalidDataError(f"images: {exc}") from None
        else:
            raw["images"] = [{"id": raw["id"], "tags": raw["tags"]}]
        try:
            return cls.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise InvalidDataError(_describe(exc)) from None

    def to_databag(self) -> dict[str, str]:
        """Return the keys the provider writes: `id`, `tags` and `images` (compact JSON)."""
        images = [ref.model_dump() for ref in self.images]
        return {
            "id": self.id,
            "tags": self.tags,
            "images": json.dumps(images, separators=(",", ":")),
        }


def _by_number(units: set[ops.Unit]) -> list[ops.Unit]:
    """Units in a stable order (app/2 before app/10), so every hook picks the same one."""
    return sorted(units, key=lambda unit: (unit.app.name, int(unit.name.rsplit("/", 1)[1])))


class ImageProvider(ops.Object):
    """The provider side: reads requirers' credentials, publishes image IDs."""

    def __init__(self, charm: ops.CharmBase, relation_name: str = "image") -> None:
        super().__init__(charm, relation_name)
        self.relation_name = relation_name

    def credentials(self, relation: ops.Relation) -> CloudCredentials | None:
        """Return the first requirer unit's complete, valid credentials; else None."""
        for unit in _by_number(relation.units):
            data = relation.data[unit]
            if not any(key in data for key in CREDENTIAL_KEYS):
                continue  # this unit has not started to write credentials
            try:
                return CloudCredentials.from_databag(data)
            except InvalidDataError as exc:
                logger.warning("Ignoring credentials of %s: %s", unit.name, exc)
        return None

    def requirer_clouds(self) -> dict[str, CloudCredentials]:
        """cloud_id → credentials over every relation of this endpoint that gave them.

        The relation with the lowest id owns a cloud id. A later relation that names the same
        cloud with other credentials (another password, say) is refused, not served: a
        requirer's data only ever affects its own relation. Identical credentials share.
        """
        return self._clouds(warn=True)

    def _clouds(self, warn: bool) -> dict[str, CloudCredentials]:
        clouds: dict[str, CloudCredentials] = {}
        for relation in sorted(self.model.relations[self.relation_name], key=lambda r: r.id):
            creds = self.credentials(relation)
            if creds is None:
                continue
            owner = clouds.setdefault(creds.cloud_id, creds)
            if owner != creds and warn:
                logger.warning(
                    "Not serving relation %s: its cloud %s is served to an earlier relation "
                    "with other credentials",
                    relation.id,
                    creds.cloud_id,
                )
        return clouds

    def served_credentials(self, relation: ops.Relation) -> CloudCredentials | None:
        """Return a relation's credentials when it is served (see requirer_clouds); else None."""
        creds = self.credentials(relation)
        if creds is None or self._clouds(warn=False).get(creds.cloud_id) != creds:
            return None
        return creds

    def publish(self, relation: ops.Relation, images: Sequence[PublishedImage]) -> None:
        """Write `id`, `tags` (of images[0]) and `images` into this unit's databag.

        No images clears the keys, so no requirer boots an image that is not there.
        """
        if not images:
            self.clear(relation)
            return
        relation.data[self.model.unit].update(ProviderImages.from_published(images).to_databag())

    def clear(self, relation: ops.Relation) -> None:
        """Remove the image keys from this unit's databag."""
        databag = relation.data[self.model.unit]
        for key in IMAGE_KEYS:
            databag.pop(key, None)


class ImageChangedEvent(ops.RelationEvent):
    """The provider published complete, valid image data; read it from `image`."""

    def __init__(
        self,
        handle: ops.Handle,
        relation: ops.Relation,
        app: ops.Application | None = None,
        unit: ops.Unit | None = None,
        image: ProviderImages | None = None,
    ) -> None:
        super().__init__(handle, relation, app, unit)
        self._image = image

    @property
    def image(self) -> ProviderImages:
        """The provider's current image and all its images."""
        if self._image is None:  # only a hand-built event lacks it
            raise RuntimeError("image_changed event emitted without image data")
        return self._image

    def snapshot(self) -> dict[str, Any]:
        """Keep the image data when the event is deferred."""
        snapshot = super().snapshot()
        if self._image is not None:
            snapshot["image"] = self._image.to_databag()
        return snapshot

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Rebuild the event from a snapshot."""
        super().restore(snapshot)
        self._image = (
            ProviderImages.from_databag(snapshot["image"]) if "image" in snapshot else None
        )


class ImageRequirerEvents(ops.ObjectEvents):
    """Events the requirer side emits."""

    image_changed = ops.EventSource(ImageChangedEvent)


class ImageRequirer(ops.Object):
    """The requirer side: publishes credentials, exposes the provider's images."""

    on = ImageRequirerEvents()  # pyright: ignore[reportAssignmentType]

    def __init__(self, charm: ops.CharmBase, relation_name: str = "image") -> None:
        super().__init__(charm, relation_name)
        self.relation_name = relation_name
        self.framework.observe(charm.on[relation_name].relation_changed, self._on_changed)

    def publish_credentials(self, relation: ops.Relation, credentials: CloudCredentials) -> None:
        """Write the six credential keys into this unit's databag."""
        relation.data[self.model.unit].update(credentials.to_databag())

    def image(self, relation: ops.Relation) -> ProviderImages | None:
        """Return the image data of the first provider unit whose data is valid; else None."""
        for unit in _by_number(relation.units):
            try:
                images = ProviderImages.from_databag(relation.data[unit])
            except InvalidDataError as exc:
                logger.error("Ignoring malformed image data from %s: %s", unit.name, exc)
                continue
            if images is not None:
                return images
        return None

    def _on_changed(self, event: ops.RelationChangedEvent) -> None:
        image = self.image(event.relation)
        if image is not None:
            self.on.image_changed.emit(event.relation, event.app, event.unit, image)
