"""What the cloud answers, as plain records: images, server states, the cloud's clock.

`client` turns openstacksdk's resources into these, so the modules that decide never see
openstacksdk.
"""

import dataclasses
import datetime
import email.utils
import re
from collections.abc import Mapping
from typing import Any

from github_runner_image_builder.images import properties as keys
from github_runner_image_builder.images.revisions import BUILD_ID, BUILT_BY_US, ImageRecord


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """A Glance image with the facts a build uses."""

    id: str
    name: str
    status: str
    created_at: str
    size: int | None = None
    checksum: str | None = None  # MD5, as Glance computes it
    hash_algo: str | None = None  # os_hash_algo, sha512 by default
    hash_value: str | None = None
    disk_format: str | None = None
    container_format: str | None = None
    properties: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def record(self) -> ImageRecord:
        """Return the parts that revision decisions need."""
        ours = BUILT_BY_US in self.properties
        build_id = self.properties.get(BUILD_ID, "")
        return ImageRecord(
            self.id, self.name, self.status, self.created_at, ours=ours, build_id=build_id
        )


@dataclasses.dataclass(frozen=True)
class ServerState:
    """A Nova server's status and, in ERROR, why."""

    status: str
    fault: str | None = None


# The poller's server list (every tick) reads status and fault only, which 2.1 has. Later
# microversions make Nova do more per server and answer (2.16's host status is a policy check
# per server, 2.47 embeds the flavor, 2.98 the image properties): about 30 % of Nova's CPU per
# list of eight servers on the local cloud.
STATE_LIST_MICROVERSION = "2.1"


def server_state(server: Any) -> ServerState | None:
    """Return a server's state; None once it is gone."""
    if server is None or server.status == "DELETED":
        return None
    fault = server.fault or {}
    message = fault.get("message") if isinstance(fault, dict) else None
    return ServerState(status=str(server.status), fault=message)


class CloudClockError(Exception):
    """The cloud's responses carry no usable Date header."""


def response_date(headers: Mapping[str, str]) -> datetime.datetime:
    """Return the time an HTTP response's Date header gives; raise CloudClockError."""
    value = headers.get("Date") or headers.get("date")
    try:
        when = email.utils.parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        when = None
    if when is None:
        raise CloudClockError(f"the cloud's response has no readable Date header ({value!r})")
    return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)


def name_prefix_filter(prefix: str) -> str:
    """Return Nova's `name` filter (a regular expression) for names starting with `prefix`."""
    return "^" + re.escape(prefix)


def image_info(image: Any) -> ImageInfo:
    """Return the facts of an openstacksdk image."""
    properties = dict(image.properties or {})
    for key in keys.GLANCE_OWN:  # openstacksdk keeps them as attributes
        value = getattr(image, key, None)
        if value:
            properties[key] = value
    return ImageInfo(
        id=image.id,
        name=image.name or "",
        status=image.status or "",
        created_at=image.created_at or "",
        size=image.size,
        checksum=image.checksum,
        hash_algo=image.hash_algo,
        hash_value=image.hash_value,
        disk_format=image.disk_format,
        container_format=image.container_format,
        properties={str(k): str(v) for k, v in properties.items()},
    )
