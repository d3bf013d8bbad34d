"""Small openstacksdk helpers the local-cloud tests and the benchmark share (host side).

They do by hand what one build of the CLI does on the cloud side, so the cloud itself (driver,
snapshots, sqlite) can be tested before and independently of the CLI.
"""

import base64
import dataclasses
import io
import time
from pathlib import Path
from typing import Any

import openstack

from lcloud import qcow2

POLL = 0.5


@dataclasses.dataclass
class Cycle:
    """What one create/shutoff/snapshot/delete cycle saw."""

    server_id: str
    console: str
    status: str
    image_id: str | None = None
    payload: dict[str, Any] | None = None


def fake_cloud_image(path: Path, codename: str, arch: str) -> Path:
    """Write a small, real qcow2 standing in for an Ubuntu cloud image."""
    qcow2.write(path, {"distro": "ubuntu", "codename": codename, "arch": arch})
    return path


def upload_base(conn: Any, name: str, path: Path) -> Any:
    """Upload a base image and wait until it is active."""
    # The bytes, not filename=: openstacksdk leaves a file it opens itself unclosed.
    image = conn.image.create_image(
        name=name, data=path.read_bytes(), disk_format="qcow2", container_format="bare", wait=True
    )
    return conn.image.wait_for_status(conn.image.get_image(image.id), "active", interval=POLL)


def user_data(nonce: str) -> str:
    """Return a minimal builder user-data script carrying the nonce as the template does."""
    return f"#!/bin/bash\nset -eu\nGRIB_NONCE={nonce}\necho building\n"


def boot(conn: Any, name: str, image_id: str, script: str, flavor: str = "m1.builder") -> Any:
    """Create a server the way the CLI does and return it (not waited for)."""
    network = conn.network.find_network("localcloud-net", ignore_missing=False)
    return conn.compute.create_server(
        name=name,
        image_id=image_id,
        flavor_id=conn.compute.find_flavor(flavor, ignore_missing=False).id,
        networks=[{"uuid": network.id}],
        user_data=base64.b64encode(script.encode()).decode(),
        config_drive=True,
    )


def wait_status(conn: Any, server: Any, *statuses: str, timeout: float = 90) -> Any:
    """Wait until the server reaches one of `statuses` (ERROR counts as an answer)."""
    deadline = time.monotonic() + timeout
    while True:
        server = conn.compute.get_server(server.id)
        if server.status in statuses or server.status == "ERROR":
            return server
        if time.monotonic() > deadline:
            raise TimeoutError(f"server {server.name} stuck in {server.status}")
        time.sleep(POLL)


def console(conn: Any, server: Any) -> str:
    """Return the server's console log."""
    output: str = conn.compute.get_server_console_output(server)["output"]
    return output


def snapshot(conn: Any, server: Any, name: str, timeout: float = 90) -> Any:
    """Snapshot a server; return the image once active, or None if it vanished or was killed."""
    # Not the proxy's create_server_image: it fetches the image afterwards and returns None
    # when a snapshot that failed at once has already been deleted.
    image_id = server.create_image(conn.compute, name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = conn.image.get_image(image_id)
        except openstack.exceptions.NotFoundException:
            return None
        if found.status in ("killed", "deleted"):
            return None
        if found.status == "active":
            return found
        time.sleep(POLL)
    raise TimeoutError(f"snapshot {name} never became active")


def payload(conn: Any, image: Any) -> dict[str, Any]:
    """Download an image and return the payload the test driver wrote into it."""
    return qcow2.read_payload(io.BytesIO(conn.image.download_image(image).content))


def delete(conn: Any, server: Any) -> None:
    """Delete a server and wait until it is gone."""
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, interval=POLL, wait=90)


def cycle(conn: Any, base_id: str, name: str, nonce: str) -> Cycle:
    """One builder's life: boot, wait for SHUTOFF, snapshot, read the snapshot, delete both."""
    server = boot(conn, name, base_id, user_data(nonce))
    server = wait_status(conn, server, "SHUTOFF")
    result = Cycle(server.id, console(conn, server), server.status)
    if server.status == "SHUTOFF":
        image = snapshot(conn, server, f"{name}-image")
        if image is not None:
            result.image_id = image.id
            result.payload = payload(conn, image)
            conn.image.delete_image(image)
    delete(conn, server)
    return result
