"""Step 1 of a build, also the `init` command: the Ubuntu cloud image in the build cloud.

The image is fetched from the mirror only when the build cloud has no active copy carrying the
mirror's current SHA256, streamed (never held whole in memory) and verified on the way.
"""

import logging

from github_runner_image_builder.cloud.client import Cloud
from github_runner_image_builder.images import properties, ubuntu_mirror
from image_builder_contract import names, platforms

logger = logging.getLogger(__name__)

UPSTREAM_SHA256 = properties.UPSTREAM_SHA256
UPSTREAM_URL = properties.UPSTREAM_URL
UPSTREAM_SERIAL = properties.UPSTREAM_SERIAL


class UnknownSerialError(Exception):
    """The mirror has no cloud image of the pinned serial."""


def _sums(url: str, directory: str, base: platforms.Base) -> str:
    """Return the SHA256SUMS text of `directory`; a pinned serial it lacks is named."""
    try:
        return ubuntu_mirror.fetch_text(f"{directory}/SHA256SUMS")
    except OSError as exc:  # urllib's HTTPError and URLError are OSErrors
        if not base.serial:
            raise
        raise UnknownSerialError(
            f"Ubuntu cloud image serial {base.serial} of {base.codename} is not at {directory} "
            f"({exc}); pin a serial listed under {url}/{base.codename}/, or drop the "
            "@serial to build from the current image"
        ) from exc


def ensure_base_image(
    cloud: Cloud, url: str, prefix: str, base: platforms.Base, arch: platforms.Arch
) -> tuple[str, bool]:
    """Return (image ID, whether it was fetched now) of the current base image in `cloud`."""
    name = names.base_image_name(prefix, base, arch)
    directory = ubuntu_mirror.directory_url(url, base)
    file_name = ubuntu_mirror.file_name(base, arch)
    sha256 = ubuntu_mirror.find_sha256(_sums(url, directory, base), file_name)
    existing = [i for i in cloud.images(name) if i.status == "active"]
    current = [i for i in existing if i.properties.get(UPSTREAM_SHA256) == sha256]
    if current:
        newest = max(current, key=lambda i: (i.created_at, i.id))
        logger.info("%s is current (sha256 %s), not fetched", name, sha256[:12])
        return newest.id, False
    source = f"{directory}/{file_name}"
    logger.info("fetching %s into %s", source, name)
    with ubuntu_mirror.open_image(source) as (stream, size):
        reader = ubuntu_mirror.VerifyingReader(stream, sha256, size)
        fmt = ubuntu_mirror.disk_format(reader.peek())
        data: object = reader if size is not None else reader.chunks()
        image = cloud.upload_image(
            name,
            data,
            disk_format=fmt,
            container_format="bare",
            properties={
                **properties.ubuntu(base, arch),
                UPSTREAM_SHA256: sha256,
                UPSTREAM_URL: source,
                UPSTREAM_SERIAL: base.serial or "current",
            },
        )
    if image.status != "active":
        cloud.delete_image(image.id)
        raise RuntimeError(f"base image {name} is {image.status} after upload, not active")
    # The older copies are stale now; only one build per (base, arch) runs at a time.
    for old in existing:
        try:
            cloud.delete_image(old.id)
        except Exception as exc:
            logger.warning("could not delete stale base image %s: %s", old.id, exc)
    return image.id, True
