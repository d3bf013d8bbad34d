"""The catalogue: which image ID serves which requirer cloud, base and arch, and its operations.

A value (immutable); the leader keeps it in the peer relation's application data and every
unit publishes from it. Each entry remembers when the job that produced it started, so a
result handed over late (a build of a unit that lost leadership) never replaces a newer image.
"""

import datetime
from collections.abc import Collection, Iterable, Sequence

import pydantic

from charms.github_runner_image_builder.v0.image import PublishedImage, load_json
from image_builder_contract.report import ImageId, ImageResult

# Characters of a stored catalogue parsed at most (a few hundred per image).
JSON_LIMIT = 1024 * 1024

# Sorts before any real build: an adopted image (published before this charm's first build of
# it, e.g. by Canonical's charm) gives way to the first image we build or find.
ADOPTED = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)


class CatalogueImage(pydantic.BaseModel):
    """One image ID that serves one requirer cloud for one (base, arch)."""

    model_config = pydantic.ConfigDict(frozen=True)

    cloud: str
    base: str
    arch: str
    id: ImageId
    built_at: datetime.datetime = ADOPTED

    @property
    def key(self) -> tuple[str, str, str]:
        """Return what this image serves: (cloud, base, arch)."""
        return (self.cloud, self.base, self.arch)


class Catalogue(pydantic.BaseModel):
    """Every image this application currently serves, one per (cloud, base, arch)."""

    model_config = pydantic.ConfigDict(frozen=True)

    images: tuple[CatalogueImage, ...] = ()

    @classmethod
    def of(cls, images: Iterable[CatalogueImage]) -> "Catalogue":
        """Return a catalogue of these images (the last one of a key wins), in a stable order."""
        by_key = {image.key: image for image in images}
        return cls(images=tuple(by_key[key] for key in sorted(by_key)))

    @classmethod
    def from_built(cls, images: Iterable[ImageResult], built_at: datetime.datetime) -> "Catalogue":
        """Return the catalogue of one job's images."""
        return cls.of(
            CatalogueImage(cloud=i.cloud, base=i.base, arch=i.arch, id=i.id, built_at=built_at)
            for i in images
        )

    @classmethod
    def from_json(cls, text: str) -> "Catalogue":
        """Parse a stored catalogue; also the older `{cloud: {"base/arch": id}}` file format.

        Raises:
            ValueError: the text is neither (empty, truncated, too long, too deep, another shape).

        """
        data = load_json(text, JSON_LIMIT)
        try:
            if isinstance(data, dict) and "images" not in data:
                return cls.of(
                    CatalogueImage(cloud=str(cloud), base=base, arch=arch, id=str(image_id))
                    for cloud, ids in data.items()
                    for (base, _, arch), image_id in (
                        (k.partition("/"), v) for k, v in ids.items()
                    )
                )
            return cls.model_validate(data)
        except (AttributeError, TypeError, RecursionError) as error:
            raise ValueError(f"not a catalogue: {type(error).__name__}") from None

    def to_json(self) -> str:
        """Return the catalogue as compact JSON (it lives in relation data)."""
        return self.model_dump_json()

    def get(self, cloud: str, base: str, arch: str) -> CatalogueImage | None:
        """Return the image serving (cloud, base, arch), if any."""
        return next((i for i in self.images if i.key == (cloud, base, arch)), None)

    def clouds(self) -> set[str]:
        """Return the clouds that have at least one image."""
        return {image.cloud for image in self.images}

    def ids(self) -> set[str]:
        """Return every image ID served: none of them may be pruned."""
        return {image.id for image in self.images}

    def merge(self, images: Iterable[CatalogueImage]) -> "Catalogue":
        """Return the catalogue with these images replacing older ones of the same key."""
        by_key = {image.key: image for image in self.images}
        for image in images:
            held = by_key.get(image.key)
            if held is None or image.built_at >= held.built_at:
                by_key[image.key] = image
        return Catalogue.of(by_key.values())

    def covers(self, images: Iterable[CatalogueImage]) -> bool:
        """Return whether the leader has taken these images in (a handover can go).

        Taken in: served, or superseded by an image at least as new for the same key or (after
        a base change settled) for the same cloud.
        """
        for image in images:
            held = self.get(*image.key)
            if held is not None and (held.id == image.id or held.built_at >= image.built_at):
                continue
            if held is None and any(
                i.cloud == image.cloud and i.built_at >= image.built_at for i in self.images
            ):
                continue
            return False
        return True

    def covers_handover(self, handover: "Catalogue", clouds: Collection[str]) -> bool:
        """Return whether the leader has taken in a unit's handover, for the clouds still there."""
        return self.covers(i for i in handover.images if i.cloud in clouds)

    def take_in(
        self,
        taken: Iterable["Catalogue"],
        bases: Sequence[str],
        arch: str,
        clouds: Collection[str],
    ) -> "Catalogue":
        """Return the leader's catalogue once it took in builds and units' handovers.

        Each is merged in (an image at least as new wins its key), then images of old settings
        settle and clouds whose requirers left are dropped.
        """
        catalogue = self
        for other in taken:
            catalogue = catalogue.merge(other.images)
        return catalogue.settle(bases, arch).restrict(clouds)

    def settle(self, bases: Sequence[str], arch: str) -> "Catalogue":
        """Drop images of old settings from the clouds that have an image of every current one.

        Until a cloud has an image of every configured base, its old images stay (still
        published, so still protected from pruning).
        """
        wanted = {(base, arch) for base in bases}
        kept = []
        for cloud in self.clouds():
            mine = [i for i in self.images if i.cloud == cloud]
            complete = wanted <= {(i.base, i.arch) for i in mine}
            kept += [i for i in mine if not complete or (i.base, i.arch) in wanted]
        return Catalogue.of(kept)

    def restrict(self, clouds: Collection[str]) -> "Catalogue":
        """Return the catalogue of these clouds only (the requirers that are still there)."""
        return Catalogue.of(i for i in self.images if i.cloud in clouds)

    def rename(self, old: str, new: str) -> "Catalogue":
        """Return the catalogue with cloud `old` called `new` (ids of an earlier charm)."""
        return Catalogue.of(
            i.model_copy(update={"cloud": new}) if i.cloud == old else i for i in self.images
        )

    def missing(self, cloud: str, bases: Sequence[str], arch: str) -> list[str]:
        """Return the bases a cloud has no image of yet."""
        return [base for base in bases if self.get(cloud, base, arch) is None]

    def published(self, cloud: str, bases: Sequence[str], arch: str) -> list[PublishedImage]:
        """Return a cloud's images for the configured bases, in the operator's order."""
        return [
            PublishedImage(id=image.id, arch=arch, base=base)
            for base in bases
            if (image := self.get(cloud, base, arch)) is not None
        ]
