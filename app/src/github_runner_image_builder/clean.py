"""The `clean` command: delete what a crashed build left behind, by resource prefix."""

import dataclasses
import datetime
import logging
import time
from collections.abc import Callable, Collection

from github_runner_image_builder import backoff
from github_runner_image_builder import revisions as rev
from github_runner_image_builder.cloud import Cloud

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
) -> Cleaned:
    """Delete builder servers, then their security groups, then unfinished images.

    `older_than` (seconds) spares anything younger: a build in flight owns it.
    """
    cutoff = None
    if older_than is not None:
        now = datetime.datetime.now(datetime.timezone.utc)
        cutoff = now - datetime.timedelta(seconds=older_than)
    images, servers, groups = rev.leftovers(
        prefix,
        [i.record() for i in cloud.images()],
        cloud.servers(),
        cloud.security_groups(),
        protect,
        cutoff=cutoff,
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
