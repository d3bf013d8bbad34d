"""The `clean` command: delete what a crashed build left behind (see revisions.Sweep)."""

import dataclasses
import datetime
import logging
import time
from collections.abc import Callable, Collection

from github_runner_image_builder.cloud import backoff
from github_runner_image_builder.cloud.client import Cloud
from github_runner_image_builder.images import revisions as rev

logger = logging.getLogger(__name__)

DELETE_TIMEOUT = 300.0
GROUP_DELETE_TIMEOUT = 60.0


@dataclasses.dataclass
class Cleaned:
    """What `clean` deleted, and what it could not."""

    servers: list[str] = dataclasses.field(default_factory=list)
    security_groups: list[str] = dataclasses.field(default_factory=list)
    images: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)


def wait_gone(cloud: Cloud, server_id: str, sleep: Callable[[float], None]) -> None:
    """Wait with backoff until the server no longer exists (its port then frees its group)."""
    backoff.poll_until(
        lambda: True if cloud.server_state(server_id) is None else None,
        DELETE_TIMEOUT,
        f"server {server_id} to be deleted",
        sleep=sleep,
    )


def clean(
    cloud: Cloud,
    prefix: str,
    protect: Collection[str] = (),
    sleep: Callable[[float], None] = time.sleep,
    older_than: float | None = None,
    *,
    upload_cloud: bool = False,
    build_id: str | None = None,
) -> Cleaned:
    """Delete builder servers, then their security groups, then unfinished images.

    `older_than` (seconds) spares anything younger, by the cloud's own clock: a build in
    flight owns it. With `build_id`, only that build's resources go, whatever their age. In an
    `upload_cloud` only unfinished images that carry our properties go (see revisions.Sweep).
    """
    cutoff = None
    if older_than is not None and build_id is None:
        cutoff = cloud.now() - datetime.timedelta(seconds=older_than)
    sweep = rev.Sweep(prefix, protect, upload_cloud=upload_cloud, build_id=build_id, cutoff=cutoff)
    # An upload cloud is a requirer's project: its servers and groups are never even listed.
    images, servers, groups = rev.leftovers(
        sweep,
        [i.record() for i in cloud.images()],
        [] if upload_cloud else cloud.servers(),
        [] if upload_cloud else cloud.security_groups(),
    )
    done = Cleaned()
    for server in servers:
        try:
            cloud.delete_server(server.id)
            wait_gone(cloud, server.id, sleep)
            done.servers.append(f"{server.id} {server.name}")
        except Exception as exc:
            done.errors.append(f"server {server.id} {server.name}: {exc}")
    for group in groups:
        try:
            backoff.retry(
                lambda g=group.id: cloud.delete_security_group(g),  # type: ignore[misc]
                GROUP_DELETE_TIMEOUT,
                sleep=sleep,
            )
            done.security_groups.append(f"{group.id} {group.name}")
        except Exception as exc:
            done.errors.append(f"security group {group.id} {group.name}: {exc}")
    for image in images:
        try:
            cloud.delete_image(image.id)
            done.images.append(f"{image.id} {image.name} ({image.status})")
        except Exception as exc:
            done.errors.append(f"image {image.id} {image.name}: {exc}")
    for kind, items in (("server", done.servers), ("security group", done.security_groups)):
        for item in items:
            logger.info("deleted %s %s", kind, item)
    for item in done.images:
        logger.info("deleted image %s", item)
    return done
