"""Upgrades without a rebuild: a catalogue of older cloud ids, and images another charm published.

Pure decisions; the charm runs them on upgrade-charm (also after `juju refresh --switch` from
Canonical's github-runner-image-builder charm, which keys clouds by project and user name too).

- Clouds used to be called `<project>_<user>` (CloudCredentials.legacy_cloud_id). An entry of
  that name moves to the current cloud it belonged to: the one whose credentials match the old
  clouds.yaml entry of that name, or the only current cloud with that legacy id.
- What this unit already publishes on a relation (Canonical's charm wrote the same keys) is
  adopted for that relation's cloud, unless two current clouds share the legacy id: then the
  published ID may belong to the other cloud, and a lookup of the cloud's own images decides.
  Adopted images give way to the first image this charm builds or finds.
"""

from collections.abc import Iterable, Mapping

from catalogue import Catalogue, CatalogueImage
from charms.github_runner_image_builder.v0.image import CloudCredentials, ProviderImages
from image_builder_contract import text

AUTH_FACTS = ("auth_url", "project_domain_name", "project_name", "user_domain_name", "username")


def _matches(creds: CloudCredentials, auth: Mapping[str, object]) -> bool:
    return all(str(auth.get(key, "")) == getattr(creds, key) for key in AUTH_FACTS)


def rename_legacy_clouds(
    catalogue: Catalogue,
    clouds: Mapping[str, CloudCredentials],
    old_auth: Mapping[str, Mapping[str, object]],
) -> Catalogue:
    """Return the catalogue with every legacy cloud id renamed to its current cloud's id.

    `old_auth` is the auth block of each entry of the clouds.yaml written before the upgrade.
    An entry that cannot be placed is left as it is (restricting to the current clouds drops
    it; its IDs stay protected while a unit still publishes them).
    """
    for name in sorted(catalogue.clouds() - clouds.keys()):
        candidates = [c for c in clouds.values() if c.legacy_cloud_id == name]
        if name in old_auth:
            candidates = [c for c in candidates if _matches(c, old_auth[name])]
        if len(candidates) == 1 and candidates[0].cloud_id not in catalogue.clouds():
            catalogue = catalogue.rename(name, candidates[0].cloud_id)
    return catalogue


def _adopted(cloud: str, published: ProviderImages) -> list[CatalogueImage]:
    images = []
    for ref in published.images:
        words = [word.strip() for word in ref.tags.split(",")]
        # `<arch>,<base>`, as both charms write them; an ID that is not a safe word is not ours
        if len(words) == 2 and all(words) and text.is_image_id(ref.id):
            images.append(CatalogueImage(cloud=cloud, arch=words[0], base=words[1], id=ref.id))
    return images


def adopt_published(
    catalogue: Catalogue,
    clouds: Mapping[str, CloudCredentials],
    published: Iterable[tuple[CloudCredentials, ProviderImages]],
) -> Catalogue:
    """Return the catalogue with what each relation publishes, for clouds it has nothing of."""
    legacy = [c.legacy_cloud_id for c in clouds.values()]
    adopted: list[CatalogueImage] = []
    for creds, images in published:
        if creds.cloud_id in catalogue.clouds() or legacy.count(creds.legacy_cloud_id) > 1:
            continue
        adopted += _adopted(creds.cloud_id, images)
    return catalogue.merge(adopted)
