"""A small in-memory stand-in for one OpenStack cloud, with the methods of `cloud.Cloud`.

It keeps real state (images with bytes and checksums, servers, security groups), so tests can
assert what is left behind; `fail` makes any method raise; `guest` scripts what a builder VM
prints on its console before it powers off, reading the nonce from the user-data like a real
guest's script would.
"""

import contextlib
import dataclasses
import datetime
import hashlib
import itertools
import re
from collections.abc import Iterator, Mapping

from github_runner_image_builder.cloud.client import Cloud, ImageInfo, ServerState
from github_runner_image_builder.cloud.placement import Flavor, Network
from github_runner_image_builder.guest import marker, userdata
from github_runner_image_builder.images.revisions import (
    BUILD_ID,
    GroupRecord,
    ServerRecord,
    group_build_id,
)
from image_builder_contract.checks import Check

_ids = itertools.count(1)


def new_id(kind: str) -> str:
    return f"{kind}-{next(_ids)}"


def qcow2(size: int = 3000) -> bytes:
    """Bytes that start like a qcow2 file."""
    return b"QFI\xfb" + bytes(i % 251 for i in range(size - 4))


@dataclasses.dataclass
class FakeServer:
    name: str
    image_id: str
    user_data: str
    group_id: str
    status: str = "BUILD"
    polls: int = 0
    console: str | None = ""
    fault: str | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    created_at: str = ""


class FakeCloud(Cloud):
    def __init__(self, name: str = "build", guest: str = "success") -> None:
        super().__init__(name, conn=object())
        self.image_data: dict[str, bytes] = {}
        self.image_info: dict[str, ImageInfo] = {}
        self.server_list: dict[str, FakeServer] = {}
        self.groups: dict[str, str] = {}
        self.group_descriptions: dict[str, str] = {}
        self.group_created: dict[str, str] = {}
        # The cloud's own clock (its responses' Date header); None: a cloud that sends none.
        self.cloud_time: datetime.datetime | None = datetime.datetime(
            2026, 1, 1, 12, 0, tzinfo=datetime.timezone.utc
        )
        self.flavor_list = [
            Flavor("f-tiny", "tiny", 1, 512, 10),
            Flavor("f-small", "small", 2, 2048, 20),
        ]
        self.network_list = [Network("n-ext", "ext", ()), Network("n-int", "int", ("s1",))]
        # success | failure:<step> | no-marker | no-console | error (no valid host) | broken
        # (ERROR for another reason) | never
        self.guest = guest
        self.no_valid_host = 0  # boots that find no valid host before the guest runs
        # What a test server booted from one of this cloud's snapshots reports:
        # pass | fail:<check>:<detail> | no-marker | never
        self.verify_guest = "pass"
        self.verify_no_valid_host = 0  # test-server boots that find no valid host
        self.software = {"os": "Ubuntu 24.04.3 LTS", "kernel": "6.8.0-90-generic", "git": "2.43"}
        self.snapshots: set[str] = set()
        self.verify_user_data: list[str] = []
        self.polls_to_shutoff = 2
        # Looks for which a booted server shows ACTIVE before its guest has run (Nova's
        # BUILD → ACTIVE → SHUTOFF); 0: it is done by the look that ends BUILD.
        self.polls_active = 0
        self.polls_to_active = 2
        self.fail: dict[str, Exception] = {}
        self.fail_from: dict[str, int] = {}  # method → the call number from which it fails
        self.busy: dict[str, int] = {}  # method → how many calls fail before one succeeds
        self.calls: list[str] = []
        self.corrupt_uploads = False
        self.clock = 0

    def _call(self, method: str) -> None:
        self.calls.append(method)
        if self.busy.get(method, 0) > 0:
            self.busy[method] -= 1
            raise RuntimeError(f"{method}: resource busy")
        if method in self.fail and self.calls.count(method) >= self.fail_from.get(method, 1):
            raise self.fail[method]

    # Test helpers
    def add_image(
        self,
        name: str,
        data: bytes = b"",
        status: str = "active",
        created_at: str | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> str:
        image_id = new_id("image")
        self.clock += 1
        self.image_data[image_id] = data
        self.image_info[image_id] = ImageInfo(
            id=image_id,
            name=name,
            status=status,
            created_at=created_at or f"2026-01-01T00:00:{self.clock:02d}Z",
            size=len(data),
            checksum=hashlib.md5(data, usedforsecurity=False).hexdigest(),
            hash_algo="sha512",
            hash_value=hashlib.sha512(data).hexdigest(),
            disk_format="qcow2",
            container_format="bare",
            properties=dict(properties or {}),
        )
        return image_id

    def names(self) -> list[str]:
        return sorted(i.name for i in self.image_info.values())

    # Glance
    def images(self, name: str | None = None) -> list[ImageInfo]:
        self._call("images")
        return [i for i in self.image_info.values() if name is None or i.name == name]

    def get_image(self, image_id: str) -> ImageInfo:
        self._call("get_image")
        return self._advance(image_id)

    def image_statuses(self, image_ids: list[str]) -> dict[str, str]:
        self._call("image_statuses")
        return {i: self._advance(i).status for i in image_ids if i in self.image_info}

    def _advance(self, image_id: str) -> ImageInfo:
        """A snapshot being saved becomes active after `polls_to_active` looks."""
        info = self.image_info[image_id]
        if info.status == "saving":
            self.server_polls_image = getattr(self, "server_polls_image", 0) + 1
            if self.server_polls_image >= self.polls_to_active:
                info = dataclasses.replace(info, status="active")
                self.image_info[image_id] = info
        return info

    def upload_image(
        self,
        name: str,
        data: object,
        *,
        disk_format: str,
        container_format: str,
        properties: Mapping[str, str],
    ) -> ImageInfo:
        self._call("upload_image")
        image_id = self.add_image(name, b"", status="queued", properties=properties)
        received = bytearray()
        try:
            if hasattr(data, "read"):
                while chunk := data.read(8192):
                    received += chunk
            else:
                for chunk in data:  # type: ignore[attr-defined]
                    received += chunk
            if "upload_image:after-read" in self.fail:
                raise self.fail["upload_image:after-read"]
        except Exception:
            # openstacksdk deletes the record of a failed upload itself.
            del self.image_info[image_id]
            raise
        stored = bytes(received) + (b"x" if self.corrupt_uploads else b"")
        info = self.image_info[image_id]
        self.image_data[image_id] = stored
        self.image_info[image_id] = dataclasses.replace(
            info,
            status="active",
            size=len(stored),
            checksum=hashlib.md5(stored, usedforsecurity=False).hexdigest(),
            hash_value=hashlib.sha512(stored).hexdigest(),
            disk_format=disk_format,
            container_format=container_format,
        )
        return self.image_info[image_id]

    @contextlib.contextmanager
    def download_image(self, image_id: str, chunk_size: int) -> Iterator[Iterator[bytes]]:
        self._call("download_image")
        data = self.image_data[image_id]
        yield (data[i : i + chunk_size] for i in range(0, len(data), chunk_size))

    def delete_image(self, image_id: str) -> None:
        self._call("delete_image")
        self.image_info.pop(image_id, None)
        self.image_data.pop(image_id, None)

    # Nova
    def flavors(self) -> list[Flavor]:
        self._call("flavors")
        return list(self.flavor_list)

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
        self._call("create_server")
        assert image_id in self.image_info, "boot from an image that exists"
        assert security_group_id in self.groups, "boot with a group that exists"
        server_id = new_id("server")
        self.server_list[server_id] = FakeServer(
            name, image_id, user_data, security_group_id, metadata=dict(metadata)
        )
        return server_id

    def _verify_guest_runs(self, server: FakeServer) -> None:
        self.verify_user_data.append(server.user_data)
        nonce = marker.find_nonce(server.user_data, marker.VERIFY_NONCE_VARIABLE) or "none"
        if self.verify_no_valid_host > 0:
            self.verify_no_valid_host -= 1
            server.status, server.fault = "ERROR", "No valid host was found."
            return
        if self.verify_guest == "never":
            server.status = "ACTIVE"
            return
        server.status = "SHUTOFF"
        if self.verify_guest == "no-marker":
            server.console = "booting\n"
            return
        failed: dict[str, str] = {}
        if self.verify_guest.startswith("fail:"):
            _, name, detail = self.verify_guest.split(":", 2)
            failed[name] = detail
        names = marker.find_checks(server.user_data)
        checks = tuple(Check(n, n not in failed, failed.get(n, "")) for n in names)
        line = marker.verify_line(nonce, marker.VerifyReport(checks, dict(self.software)))
        server.console = f"booting\n{line}\nreboot: Power down\n"

    def _guest_runs(self, server: FakeServer) -> None:
        if server.image_id in self.snapshots:
            self._verify_guest_runs(server)
            return
        nonce = marker.find_nonce(server.user_data) or "no-nonce"
        outcome = self.guest
        if outcome == "never":
            server.status = "ACTIVE"
            return
        if outcome == "error" or self.no_valid_host > 0:
            self.no_valid_host -= 1
            server.status, server.fault = "ERROR", "No valid host was found."
            return
        if outcome == "broken":
            server.status, server.fault = "ERROR", "the hypervisor broke"
            return
        server.status = "SHUTOFF"
        if outcome == "success":
            server.console = f"booting\n{marker.success_line(nonce)}\r\nreboot: Power down\n"
        elif outcome.startswith("failure:"):
            line = marker.failure_line(nonce, outcome.split(":", 1)[1])
            server.console = f"apt-get: E: broken\n{line}\n"
        elif outcome == "no-marker":
            server.console = "booting\nkernel panic\n"
        elif outcome == "no-console":
            server.console = None

    def server_state(self, server_id: str) -> ServerState | None:
        self._call("server_state")
        server = self.server_list.get(server_id)
        if server is None:
            return None
        return self._look(server)

    def server_states(self, name_filter: str) -> dict[str, ServerState]:
        self._call("server_states")
        return {
            server_id: self._look(server)
            for server_id, server in list(self.server_list.items())
            if re.search(name_filter, server.name)
        }

    def _look(self, server: FakeServer) -> ServerState:
        """The guest runs (and powers off) after `polls_to_shutoff` + `polls_active` looks."""
        server.polls += 1
        guest_done = self.polls_to_shutoff + self.polls_active
        # Still booting, or ACTIVE only because its guest has not run yet.
        waiting = server.status == "BUILD" or (
            server.status == "ACTIVE" and server.polls <= guest_done
        )
        if waiting and server.polls >= guest_done:
            self._guest_runs(server)
        elif server.status == "BUILD" and server.polls >= self.polls_to_shutoff:
            server.status = "ACTIVE"
        return ServerState(server.status, server.fault)

    def console_output(self, server_id: str) -> str | None:
        self._call("console_output")
        return self.server_list[server_id].console

    def snapshot_server(self, server_id: str, name: str, metadata: Mapping[str, str]) -> str:
        self._call("snapshot_server")
        server = self.server_list[server_id]
        assert server.status == "SHUTOFF", "snapshot only a stopped server"
        data = self.image_data[server.image_id] + b"-built"
        image_id = self.add_image(name, data, status="saving", properties=metadata)
        self.server_polls_image = 0
        self.snapshots.add(image_id)
        return image_id

    def update_image_properties(self, image_id: str, properties: Mapping[str, str]) -> None:
        self._call("update_image_properties")
        info = self.image_info[image_id]
        self.image_info[image_id] = dataclasses.replace(
            info, properties={**info.properties, **properties}
        )

    def delete_server(self, server_id: str) -> None:
        self._call("delete_server")
        self.server_list.pop(server_id, None)

    def servers(self) -> list[ServerRecord]:
        self._call("servers")
        return [
            ServerRecord(i, s.name, s.created_at, s.metadata.get(BUILD_ID, ""))
            for i, s in self.server_list.items()
        ]

    def now(self) -> datetime.datetime:
        self._call("now")
        if self.cloud_time is None:
            raise RuntimeError("the cloud's response has no readable Date header")
        return self.cloud_time

    # Neutron
    def networks(self) -> list[Network]:
        self._call("networks")
        return list(self.network_list)

    def create_security_group(self, name: str, description: str) -> str:
        self._call("create_security_group")
        group_id = new_id("group")
        self.groups[group_id] = name
        self.group_descriptions[group_id] = description
        return group_id

    def delete_security_group(self, group_id: str) -> None:
        self._call("delete_security_group")
        if any(s.group_id == group_id for s in self.server_list.values()):
            raise RuntimeError("security group in use")  # Neutron's 409 while a port uses it
        self.groups.pop(group_id, None)

    def security_groups(self) -> list[GroupRecord]:
        self._call("security_groups")
        return [
            GroupRecord(
                i,
                n,
                self.group_created.get(i, ""),
                group_build_id(self.group_descriptions.get(i, "")),
            )
            for i, n in self.groups.items()
        ]


def render(request: userdata.UserDataOptions) -> str:
    """A stand-in for userdata.render_user_data that shows what it was given."""
    lines = ["#!/bin/bash", f"GRIB_NONCE={request.nonce}", f"# {request.base.codename}"]
    lines += [f"# {request.arch.github} {request.runner_version} {request.proxy}"]
    secrets = request.script_secrets.items()
    lines += [f"export {key}=<{len(value)} chars>" for key, value in secrets]
    return "\n".join(lines) + "\n"
