"""The only module that talks to OpenStack (Keystone, Glance, Nova, Neutron) via openstacksdk.

Each method is one small cloud operation returning plain records, so the modules that decide
(placement, revisions, the steps) can be tested against a small fake with the same methods. Each is
retried on transient errors (`transient`); streamed uploads and downloads are not, as their
data cannot be read twice.
"""

import base64
import contextlib
import datetime
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from github_runner_image_builder.cloud import resources, transient
from github_runner_image_builder.cloud.placement import Flavor, Network
from github_runner_image_builder.cloud.resources import (
    STATE_LIST_MICROVERSION,
    CloudClockError,
    ImageInfo,
    ServerState,
    name_prefix_filter,
    response_date,
)
from github_runner_image_builder.images import properties as keys
from github_runner_image_builder.images.revisions import GroupRecord, ServerRecord, group_build_id

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _build_id_of(server: Any) -> str:
    return str((server.metadata or {}).get(keys.BUILD_ID, ""))


_auths: dict[str, Any] = {}  # cloud name -> the keystoneauth plugin every connection shares
_auths_lock = threading.Lock()


def _connect(name: str) -> Any:
    """Open a connection to cloud `name` that shares its token with every other one.

    Each build thread has connections of its own (openstacksdk's are not shared between
    threads, and their configuration is changed by version discovery), but one auth plugin
    per cloud holds the token: a four-base build to three clouds authenticated 17 times, each
    a Keystone password check, and now 4. The plugin takes its own lock to authenticate.
    """
    import keystoneauth1.session  # noqa: PLC0415 - see `Cloud.conn`
    import openstack.config  # noqa: PLC0415
    import openstack.connection  # noqa: PLC0415

    region = openstack.config.get_cloud_region(cloud=name)
    with _auths_lock:
        auth = _auths.setdefault(name, region.get_auth())

    def session(**kwargs: Any) -> Any:
        kwargs["auth"] = auth
        return keystoneauth1.session.Session(**kwargs)

    region.set_session_constructor(session)  # type: ignore[arg-type]  # called like the class
    return openstack.connection.Connection(config=region)


class Cloud:
    """One OpenStack cloud from clouds.yaml, by name; connects on first use."""

    def __init__(
        self, name: str, conn: Any = None, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.name = name
        self._conn = conn
        self._sleep = sleep

    def _retried(
        self, what: str, action: Callable[[], T], kind: transient.Kind = transient.Kind.READ
    ) -> T:
        return transient.call(action, f"cloud {self.name}: {what}", kind, sleep=self._sleep)

    @property
    def conn(self) -> Any:
        """The openstacksdk connection (imported lazily: the CLI's other commands need none)."""
        if self._conn is None:
            # Imported there, lazily: 0.3 s that the CLI's other commands do not need.
            self._conn = _connect(self.name)
        return self._conn

    def now(self) -> datetime.datetime:
        """Return the cloud's own time: the Date header of a small Keystone response.

        Ages of the cloud's resources are judged by this clock, never the unit's, which may
        run hours off. Keystone's version document needs no token and is a few hundred bytes.
        """

        def ask() -> datetime.datetime:
            response = self.conn.identity.get("/", authenticated=False, raise_exc=False)
            return response_date(response.headers)

        return self._retried("read the cloud's clock", ask)

    # Glance
    def images(self, name: str | None = None) -> list[ImageInfo]:
        """Return the images visible to the project, optionally only those called `name`."""

        # Only the project's own images: a shared or public image of the same name is not ours
        # to count as a revision, let alone delete.
        def list_images() -> list[ImageInfo]:
            query: dict[str, str] = {"owner": self.conn.current_project_id}
            if name:
                query["name"] = name
            return [resources.image_info(i) for i in self.conn.image.images(**query)]

        return self._retried("list images", list_images)

    def image_statuses(self, image_ids: list[str]) -> dict[str, str]:
        """Return {image ID: status} in one list call; an image missing from it is gone."""
        if not image_ids:
            return {}
        query = {"id": "in:" + ",".join(image_ids)}
        return self._retried(
            "list images",
            lambda: {str(i.id): str(i.status or "") for i in self.conn.image.images(**query)},
        )

    def get_image(self, image_id: str) -> ImageInfo:
        """Return one image by ID."""
        return self._retried(
            f"get image {image_id}",
            lambda: resources.image_info(self.conn.image.get_image(image_id)),
        )

    def upload_image(
        self,
        name: str,
        data: object,
        *,
        disk_format: str,
        container_format: str,
        properties: Mapping[str, str],
    ) -> ImageInfo:
        """Create an image and stream `data` (a file-like object) into it.

        openstacksdk deletes the image record itself when the upload fails. The size reaches
        Glance as the Content-Length when `data` has a length. `size=` is left out: not every
        openstacksdk 4.x takes it, and where it does not, it would become an image property.
        """
        image = self.conn.image.create_image(
            name,
            data=data,
            disk_format=disk_format,
            container_format=container_format,
            allow_duplicates=True,
            validate_checksum=False,
            wait=False,
            **properties,
        )
        return self.get_image(image.id)

    @contextlib.contextmanager
    def download_image(self, image_id: str, chunk_size: int) -> Iterator[Iterator[bytes]]:
        """Yield the image's bytes as an iterator of chunks of at most `chunk_size`."""
        response = self._retried(
            f"download image {image_id}",
            lambda: self.conn.image.download_image(image_id, stream=True, chunk_size=chunk_size),
        )
        try:
            yield response.iter_content(chunk_size=chunk_size)
        finally:
            response.close()

    def update_image_properties(self, image_id: str, properties: Mapping[str, str]) -> None:
        """Set (add or replace) properties of an image."""
        self.conn.image.update_image(image_id, **properties)

    def delete_image(self, image_id: str) -> None:
        """Delete an image; a missing one is not an error."""
        self._retried(
            f"delete image {image_id}",
            lambda: self.conn.image.delete_image(image_id, ignore_missing=True),
        )

    # Nova
    def flavors(self) -> list[Flavor]:
        """Return the flavors the project may use."""
        return self._retried(
            "list flavors",
            lambda: [
                Flavor(f.id, f.name, int(f.vcpus or 0), int(f.ram or 0), int(f.disk or 0))
                for f in self.conn.compute.flavors()
            ],
        )

    def create_server(
        self,
        name: str,
        *,
        image_id: str,
        flavor_id: str,
        network_id: str,
        security_group_id: str,
        user_data: str,
        metadata: Mapping[str, str],
    ) -> str:
        """Boot a server with a config drive and no key pair; return its ID.

        `name` is unique to the build: a retry first adopts a server an earlier attempt made.
        """
        attempts = 0

        def create() -> str:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                for server in self.conn.compute.servers(name=f"^{re.escape(name)}$"):
                    return str(server.id)
            server = self.conn.compute.create_server(
                name=name,
                image_id=image_id,
                flavor_id=flavor_id,
                networks=[{"uuid": network_id}],
                security_groups=[{"name": security_group_id}],
                config_drive=True,
                # The compute API takes user data base64-encoded; the proxy does not encode it.
                user_data=base64.b64encode(user_data.encode()).decode(),
                metadata=dict(metadata),
            )
            return str(server.id)

        return self._retried(f"create server {name}", create, transient.Kind.CREATE)

    def server_state(self, server_id: str) -> ServerState | None:
        """Return the server's status, or None when it no longer exists."""
        return self._retried(
            f"get server {server_id}",
            lambda: resources.server_state(
                self.conn.compute.find_server(server_id, ignore_missing=True)
            ),
        )

    def server_states(self, name_filter: str) -> dict[str, ServerState]:
        """Return {server ID: state} of every server whose name matches, in one list call.

        `name_filter` is Nova's: a regular expression (see `name_prefix_filter`).
        """

        def list_servers() -> dict[str, ServerState]:
            states = {}
            servers = self.conn.compute.servers(
                details=True, name=name_filter, microversion=STATE_LIST_MICROVERSION
            )
            for server in servers:
                state = resources.server_state(server)
                if state is not None:
                    states[str(server.id)] = state
            return states

        return self._retried("list servers", list_servers)

    def console_output(self, server_id: str) -> str | None:
        """Return the server's console log, or None when the cloud keeps none."""
        output = self._retried(
            f"console of server {server_id}",
            lambda: self.conn.compute.get_server_console_output(server_id),
        )
        text = output.get("output") if isinstance(output, dict) else None
        return str(text) if text else None

    def snapshot_server(self, server_id: str, name: str, metadata: Mapping[str, str]) -> str:
        """Start a snapshot of the server as image `name` carrying `metadata`; return its ID.

        The proxy's `create_server_image` fetches the image after Nova answers and returns None
        when a hypervisor that failed at once has already deleted it; asking the server
        resource for the ID alone leaves that to the wait for "active", which reports it.
        """
        from openstack.compute.v2.server import Server  # noqa: PLC0415 - see `conn`

        server = Server.new(id=server_id)
        image_id = self._retried(
            f"snapshot server {server_id}",
            lambda: server.create_image(self.conn.compute, name, metadata=dict(metadata)),
            transient.Kind.CREATE,
        )
        return str(image_id)

    def delete_server(self, server_id: str) -> None:
        """Start deleting a server; a missing one is not an error."""
        self._retried(
            f"delete server {server_id}",
            lambda: self.conn.compute.delete_server(server_id, ignore_missing=True),
        )

    def servers(self) -> list[ServerRecord]:
        """Return the project's servers."""
        return self._retried(
            "list servers",
            lambda: [
                ServerRecord(
                    s.id,
                    s.name,
                    s.created_at or "",
                    str((s.metadata or {}).get(keys.BUILD_ID, "")),
                )
                for s in self.conn.compute.servers(details=True)
            ],
        )

    # Neutron
    def networks(self) -> list[Network]:
        """Return the networks the project can attach to."""
        return self._retried(
            "list networks",
            lambda: [
                Network(n.id, n.name or "", tuple(n.subnet_ids or ()))
                for n in self.conn.network.networks()
            ],
        )

    def create_security_group(self, name: str, description: str) -> str:
        """Create a security group with no ingress rule at all; return its ID.

        Neutron gives a new group egress rules only, unless an admin changed the default rule
        templates, so any ingress rule it came with is removed. `name` is unique to the build: a
        retry first adopts a group an earlier attempt made.
        """
        attempts = 0

        def create() -> Any:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                for found in self.conn.network.security_groups(name=name):
                    return found
            return self.conn.network.create_security_group(name=name, description=description)

        group = self._retried(f"create security group {name}", create, transient.Kind.CREATE)
        try:
            for rule in group.security_group_rules or []:
                if rule.get("direction") == "ingress":
                    rule_id = rule["id"]
                    self._retried(
                        f"delete security group rule {rule_id}",
                        lambda: self.conn.network.delete_security_group_rule(
                            rule_id,  # noqa: B023 - called at once, within this iteration
                            ignore_missing=True,
                        ),
                    )
        except Exception:
            # Never boot with an ingress rule, nor leave the group behind.
            self.conn.network.delete_security_group(group.id, ignore_missing=True)
            raise
        return str(group.id)

    def delete_security_group(self, group_id: str) -> None:
        """Delete a security group; a missing one is not an error."""
        self._retried(
            f"delete security group {group_id}",
            lambda: self.conn.network.delete_security_group(group_id, ignore_missing=True),
        )

    def security_groups(self) -> list[GroupRecord]:
        """Return the project's security groups."""
        return self._retried(
            "list security groups",
            lambda: [
                GroupRecord(g.id, g.name, g.created_at or "", group_build_id(g.description or ""))
                for g in self.conn.network.security_groups()
            ],
        )


__all__ = [
    "STATE_LIST_MICROVERSION",
    "Cloud",
    "CloudClockError",
    "ImageInfo",
    "ServerState",
    "name_prefix_filter",
    "response_date",
]
