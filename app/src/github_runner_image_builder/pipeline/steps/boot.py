"""Booting a server of a build (the builder, the test server) and reading its verdict.

Both boot on one placement (flavor and network, chosen once per build), are booted again after
"No valid host", and report through their console log once they power themselves off.
"""

import dataclasses
import logging
from collections.abc import Mapping

from github_runner_image_builder.cloud import placement, servers
from github_runner_image_builder.cloud.client import Cloud
from github_runner_image_builder.guest import marker
from github_runner_image_builder.images import properties
from github_runner_image_builder.pipeline.steps.common import (
    Placement,
    RunContext,
    ServerHandle,
    StepError,
)
from image_builder_contract.spec import SiteSpec

logger = logging.getLogger(__name__)

CONSOLE_TAIL_LINES = 25


@dataclasses.dataclass(frozen=True)
class Boot:
    """One server a build boots: the builder, or the test server of the verification."""

    name: str
    image_id: str
    group_id: str
    user_data: str
    nonce: str  # the marker nonce its user-data prints
    timeout: float
    label: str  # for log lines, e.g. "noble-x64 verify"


def choose_placement(
    cloud: Cloud, flavor: str | None, network: str | None, label: str
) -> Placement:
    """Return the flavor and network to boot on: the ones named, or the cloud's best fit."""
    chosen_flavor = placement.choose_flavor(cloud.flavors(), flavor)
    chosen_network = placement.choose_network(cloud.networks(), network)
    logger.info("%s server: flavor %s, network %s", label, chosen_flavor.name, chosen_network.name)
    return Placement(chosen_flavor.id, chosen_network.id)


@dataclasses.dataclass
class OwnedServer:
    """The server one step boots and deletes: its ID as each boot creates it, then its handle.

    Boots again after "No valid host" (each new ID is recorded before the wait, so the clean-up
    always knows what to delete).
    """

    cloud: Cloud
    context: RunContext
    site: SiteSpec  # the boot retry and the build id
    current_id: str | None = None
    handle: ServerHandle | None = None

    def boot(self, boot: Boot, where: Placement) -> ServerHandle:
        """Boot the server and return it once it has left BUILD."""
        metadata = {properties.NONCE: boot.nonce}
        if self.site.build_id:
            metadata[properties.BUILD_ID] = self.site.build_id

        def create() -> str:
            return self.cloud.create_server(
                boot.name,
                image_id=boot.image_id,
                flavor_id=where.flavor_id,
                network_id=where.network_id,
                security_group_id=boot.group_id,
                user_data=boot.user_data,
                metadata=metadata,
            )

        def record(server_id: str | None) -> None:
            self.current_id = server_id

        booted = servers.boot(
            self.cloud,
            self.context.poller,
            create,
            record,
            timeout=boot.timeout,
            label=boot.label,
            retry=servers.BootRetry(delay=self.site.boot_retry_delay),
            cancellation=self.context.cancellation,
            sleep=self.context.sleep,
            clock=self.context.clock,
        )
        self.handle = ServerHandle(booted.server_id, booted.created_at)
        return self.handle

    def delete(self) -> None:
        """Delete the server (or wait out the deletion asked for) until it is gone."""
        if self.current_id is None:
            return
        handle = self.handle
        if handle is None or handle.id != self.current_id:  # a boot that never finished
            handle = ServerHandle(self.current_id, 0.0)
        servers.delete(self.cloud, self.context.poller, handle.id, asked_at=handle.delete_asked_at)
        self.current_id = self.handle = None


def wait_for_console(
    cloud: Cloud, context: RunContext, server: ServerHandle, timeout: float
) -> str | None:
    """Wait for a guest to power itself off and return its console log.

    One wait for every server a build boots (builder and test server), through the run's
    poller: ERROR, disappearance or timeout raise `servers.ServerError`; a cancellation raises
    `Cancelled` at the next tick. Every answer since the server's creation counts.
    """
    servers.wait_for_power_off(
        context.poller, server.id, timeout, context.cancellation, since=server.created_at
    )
    return cloud.console_output(server.id)


def ask_to_delete(
    cloud: Cloud, context: RunContext, server: ServerHandle, label: str, what: str
) -> None:
    """Ask for a server's deletion now; the step that booted it waits for it in its clean-up."""
    try:
        server.delete_asked_at = servers.request_delete(cloud, context.poller, server.id)
    except Exception as exc:
        logger.warning("%s: could not delete %s yet: %s", label, what, exc)


def redact(text: str, secrets: Mapping[str, str]) -> str:
    """Return `text` with every secret value replaced, for console output we report."""
    # Longest first: a proxy URL goes whole before its password alone.
    for value in sorted(secrets.values(), key=len, reverse=True):
        if value:
            text = text.replace(value, "***")
    return text


def judge_console(console: str | None, nonce: str, secrets: Mapping[str, str]) -> None:
    """Raise StepError unless the console log carries this build's success marker."""
    if console is None:
        raise StepError("the server shut off but the cloud has no console log to read its result")
    result = marker.parse_console(console, nonce)
    tail = redact("\n".join(console.splitlines()[-CONSOLE_TAIL_LINES:]), secrets)
    if result is None:
        raise StepError(f"the server shut off without a completion marker; console tail:\n{tail}")
    if not result.success:
        raise StepError(f"the guest failed at step {result.step!r}; console tail:\n{tail}")
