"""The steps of one build of (base, arch), each with its clean-up (see `pipeline`).

base-image → security-group → server → wait → snapshot → copy → prune; the clean-ups then
delete the snapshot when it was only a transit copy (or the build failed), the builder server,
and the security group, in that order. Every wait goes through the run's one `Poller` (see
`RunContext`), and every run-side wait stops at a cancellation.
"""

import dataclasses
import datetime
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from github_runner_image_builder import (
    backoff,
    baseimage,
    choice,
    copying,
    lifecycle,
    marker,
    platforms,
    userdata,
)
from github_runner_image_builder import revisions as rev
from github_runner_image_builder.cancel import NEVER, Cancellation
from github_runner_image_builder.cloud import Cloud, ImageInfo
from github_runner_image_builder.pipeline import Step
from github_runner_image_builder.poller import Poller
from github_runner_image_builder.report import Failure, ImageResult

logger = logging.getLogger(__name__)

CONSOLE_TAIL_LINES = 25
GROUP_DELETE_TIMEOUT = 60.0


class StepError(Exception):
    """A build step failed; the message says why."""


# Renders the user-data script; userdata.render_user_data, or a stand-in in tests.
Renderer = Callable[[userdata.UserDataOptions], str]


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """Everything `build` was asked to do."""

    cloud: str
    bases: tuple[platforms.Base, ...]
    arches: tuple[platforms.Arch, ...]
    prefix: str = "github-runner-image-builder"
    upload_clouds: tuple[str, ...] = ()
    keep_revisions: int = 5
    protect: frozenset[str] = frozenset()
    flavor: str | None = None
    network: str | None = None
    runner_version: str | None = None
    script_url: str | None = None
    script_secrets: Mapping[str, str] = dataclasses.field(default_factory=dict)
    proxy: str | None = None
    timeout: float = 3600.0
    cloud_images_url: str = "https://cloud-images.ubuntu.com"
    boot_retry: lifecycle.BootRetry = dataclasses.field(default_factory=lifecycle.BootRetry)

    def targets(self) -> tuple[str, ...]:
        """Return the clouds that get the image: the upload clouds, or the build cloud."""
        return self.upload_clouds or (self.cloud,)


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What every build of one run shares: the poller, the cancellation flag, and time."""

    poller: Poller
    cancellation: Cancellation = NEVER
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


@dataclasses.dataclass
class BuildState:
    """What one build of (base, arch) has created so far and what it produced."""

    base: platforms.Base
    arch: platforms.Arch
    nonce: str
    clouds: Mapping[str, Cloud]  # by name: the build cloud and every upload cloud
    base_image_id: str | None = None
    base_image_sha256: str = ""  # the upstream SHA256 the base image carries
    group_id: str | None = None
    server_id: str | None = None
    server_deleting: bool = False  # its deletion was asked for already
    snapshot_id: str | None = None
    properties: dict[str, str] = dataclasses.field(default_factory=dict)
    copies: dict[str, str] = dataclasses.field(default_factory=dict)  # cloud → image ID
    images: list[ImageResult] = dataclasses.field(default_factory=list)
    failures: list[Failure] = dataclasses.field(default_factory=list)

    @property
    def label(self) -> str:
        """Return the short name log lines use for this build, e.g. noble-x64."""
        return f"{self.base.codename}-{self.arch.github}"

    def fail(self, cloud: str, step: str, error: str) -> None:
        """Record a failure that does not stop the build (one cloud of several)."""
        # The JSON report is for the charm; the log line is for the operator reading stderr.
        logger.error("%s %s failed in %s: %s", self.label, step, cloud, error)
        self.failures.append(Failure(self.base.codename, self.arch.github, cloud, step, error))


def _redact(text: str, secrets: Mapping[str, str]) -> str:
    """Return `text` with every secret value replaced, for console output we report."""
    for value in secrets.values():
        if value:
            text = text.replace(value, "***")
    return text


def _name(options: BuildOptions, state: BuildState, kind: str) -> str:
    return f"{options.prefix}-{kind}-{state.base.codename}-{state.arch.github}-{state.nonce}"


@dataclasses.dataclass
class BaseImageStep:
    """Make sure the build cloud has the current Ubuntu cloud image for (base, arch)."""

    options: BuildOptions
    name: str = "base-image"

    def run(self, state: BuildState) -> None:
        """Find or fetch the base image; note its upstream SHA256 for the image's properties."""
        cloud = state.clouds[self.options.cloud]
        state.base_image_id, _ = baseimage.ensure_base_image(
            cloud,
            self.options.cloud_images_url,
            self.options.prefix,
            state.base,
            state.arch,
        )
        # Read now, not at snapshot time: the snapshot follows the guest's power-off at once.
        base = cloud.get_image(state.base_image_id)
        state.base_image_sha256 = base.properties.get(baseimage.UPSTREAM_SHA256, "")

    def cleanup(self, state: BuildState, failed: bool) -> None:
        """Nothing: a current base image is worth keeping, and a failed upload deletes itself."""


@dataclasses.dataclass
class SecurityGroupStep:
    """A security group of the builder's own, with no ingress rule: nothing may reach in."""

    options: BuildOptions
    context: RunContext
    name: str = "security-group"

    def run(self, state: BuildState) -> None:
        """Create the group."""
        state.group_id = state.clouds[self.options.cloud].create_security_group(
            _name(self.options, state, "builder"),
            "github-runner-image-builder builder: no ingress",
        )

    def cleanup(self, state: BuildState, failed: bool) -> None:
        """Delete the group; retried a while, as Neutron may release the server's port late."""
        if state.group_id:
            cloud, group_id = state.clouds[self.options.cloud], state.group_id
            backoff.retry(
                lambda: cloud.delete_security_group(group_id),
                GROUP_DELETE_TIMEOUT,
                sleep=self.context.sleep,
                clock=self.context.clock,
            )
            state.group_id = None


@dataclasses.dataclass
class ServerStep:
    """Boot the builder server from the base image with the rendered user-data.

    Done once the server has left BUILD; after "No valid host" it is booted again (lifecycle).
    """

    options: BuildOptions
    render: Renderer
    context: RunContext
    name: str = "server"

    def run(self, state: BuildState) -> None:
        """Choose flavor and network, render the user-data, boot and wait for the boot."""
        cloud = state.clouds[self.options.cloud]
        flavor = choice.choose_flavor(cloud.flavors(), self.options.flavor)
        network = choice.choose_network(cloud.networks(), self.options.network)
        user_data = self.render(
            userdata.UserDataOptions(
                base=state.base,
                arch=state.arch,
                nonce=state.nonce,
                runner_version=self.options.runner_version,
                script_url=self.options.script_url,
                script_secrets=self.options.script_secrets,
                proxy=self.options.proxy,
            )
        )
        if state.base_image_id is None or state.group_id is None:
            raise StepError("no base image or security group to boot with")
        logger.info("%s server: flavor %s, network %s", state.label, flavor.name, network.name)
        image_id, group_id = state.base_image_id, state.group_id

        def create() -> str:
            return cloud.create_server(
                _name(self.options, state, "builder"),
                image_id=image_id,
                flavor_id=flavor.id,
                network_id=network.id,
                security_group_id=group_id,
                user_data=user_data,
                metadata={"grib_nonce": state.nonce},
            )

        def record(server_id: str | None) -> None:
            state.server_id = server_id

        lifecycle.boot(
            cloud,
            self.context.poller,
            create,
            record,
            timeout=self.options.timeout,
            label=state.label,
            retry=self.options.boot_retry,
            cancellation=self.context.cancellation,
            sleep=self.context.sleep,
            clock=self.context.clock,
        )

    def cleanup(self, state: BuildState, failed: bool) -> None:
        """Delete the server and wait until it is gone, so its port frees the security group."""
        if not state.server_id:
            return
        lifecycle.delete(
            state.clouds[self.options.cloud],
            self.context.poller,
            state.server_id,
            asked=state.server_deleting,
        )
        state.server_id = None


def judge_console(console: str | None, nonce: str, secrets: Mapping[str, str]) -> None:
    """Raise StepError unless the console log carries this build's success marker."""
    if console is None:
        raise StepError("the server shut off but the cloud has no console log to read its result")
    result = marker.parse_console(console, nonce)
    tail = _redact("\n".join(console.splitlines()[-CONSOLE_TAIL_LINES:]), secrets)
    if result is None:
        raise StepError(f"the server shut off without a completion marker; console tail:\n{tail}")
    if not result.success:
        raise StepError(f"the guest failed at step {result.step!r}; console tail:\n{tail}")


@dataclasses.dataclass
class WaitStep:
    """Wait for the guest to power itself off, then read its verdict from the console log."""

    options: BuildOptions
    context: RunContext
    name: str = "wait"

    def run(self, state: BuildState) -> None:
        """Wait for SHUTOFF (ERROR, disappearance or timeout fail), then judge the console."""
        cloud = state.clouds[self.options.cloud]
        server_id = state.server_id
        if server_id is None:
            raise StepError("no server to wait for")
        lifecycle.wait_for_power_off(
            self.context.poller, server_id, self.options.timeout, self.context.cancellation
        )
        judge_console(cloud.console_output(server_id), state.nonce, self.options.script_secrets)

    def cleanup(self, state: BuildState, failed: bool) -> None:
        """Nothing of its own."""


def image_properties(
    options: BuildOptions, state: BuildState, now: datetime.datetime
) -> dict[str, str]:
    """Return the Glance properties every copy of the built image carries."""
    return {
        **baseimage.base_properties(state.base, state.arch),
        "grib_base": state.base.codename,
        "grib_arch": state.arch.github,
        "grib_runner_version": options.runner_version or "latest",
        "grib_build_time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "grib_base_image_id": state.base_image_id or "",
        "grib_base_image_sha256": state.base_image_sha256,
    }


@dataclasses.dataclass
class SnapshotStep:
    """Snapshot the stopped server and wait for the image to become active."""

    options: BuildOptions
    context: RunContext
    now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.timezone.utc)
    name: str = "snapshot"

    def run(self, state: BuildState) -> None:
        """Create the snapshot with the image's properties; wait until active."""
        cloud = state.clouds[self.options.cloud]
        if state.server_id is None:
            raise StepError("no server to snapshot")
        state.properties = image_properties(self.options, state, self.now())
        name = platforms.image_name(self.options.prefix, state.base, state.arch)
        state.snapshot_id = cloud.snapshot_server(state.server_id, name, state.properties)
        snapshot_id = state.snapshot_id

        def active(status: str | None) -> bool | None:
            if status is None:
                raise StepError(f"snapshot {snapshot_id} vanished")
            if status in ("killed", "deleted", "deactivated"):
                raise StepError(f"snapshot {snapshot_id} is {status}")
            return True if status == "active" else None

        try:
            self.context.poller.wait_image(
                snapshot_id,
                active,
                self.options.timeout,
                f"snapshot {snapshot_id} to become active",
                self.context.cancellation,
            )
        except backoff.WaitTimeoutError as exc:
            raise StepError(str(exc)) from exc
        # The builder has served its purpose: its deletion runs while the image is copied,
        # and the server step's cleanup only waits for it to be gone.
        try:
            cloud.delete_server(state.server_id)
            state.server_deleting = True
        except Exception as exc:
            logger.warning("%s snapshot: could not delete the builder yet: %s", state.label, exc)

    def cleanup(self, state: BuildState, failed: bool) -> None:
        """Delete the snapshot when the build failed or it was only a transit copy."""
        transit = self.options.cloud not in self.options.targets()
        if state.snapshot_id and (failed or transit):
            state.clouds[self.options.cloud].delete_image(state.snapshot_id)
            state.snapshot_id = None


@dataclasses.dataclass
class CopyStep:
    """Copy the snapshot to every upload cloud at once; fail only when no cloud got it."""

    options: BuildOptions
    context: RunContext
    name: str = "copy"

    def run(self, state: BuildState) -> None:
        """Stream the snapshot to the upload clouds; record per-cloud failures."""
        build_cloud = state.clouds[self.options.cloud]
        if state.snapshot_id is None:
            raise StepError("no snapshot to copy")
        if self.options.cloud in self.options.targets():
            state.copies[self.options.cloud] = state.snapshot_id
        others = {c: state.clouds[c] for c in self.options.targets() if c != self.options.cloud}
        if others:
            source = build_cloud.get_image(state.snapshot_id)
            logger.info(
                "%s copy: %s MiB to %s, holding at most %d MiB",
                state.label,
                "?" if source.size is None else f"{source.size / 2**20:.0f}",
                ", ".join(others),
                copying.memory_bound() // 2**20,
            )
            results = copying.copy_image(
                build_cloud,
                source,
                others,
                properties=state.properties,
                cancellation=self.context.cancellation,
            )
            for cloud_name, result in results.items():
                if isinstance(result, ImageInfo):
                    state.copies[cloud_name] = result.id
            # A cancelled copy fails every cloud: that is the cancellation, not one cloud's fault.
            self.context.cancellation.check()
            for cloud_name, result in results.items():
                if not isinstance(result, ImageInfo):
                    state.fail(cloud_name, self.name, str(result) or type(result).__name__)
        if not state.copies:
            raise StepError("the image reached no upload cloud")
        name = platforms.image_name(self.options.prefix, state.base, state.arch)
        for cloud_name in self.options.targets():
            if cloud_name in state.copies:
                state.images.append(
                    ImageResult(
                        name,
                        state.base.codename,
                        state.arch.github,
                        cloud_name,
                        state.copies[cloud_name],
                    )
                )

    def cleanup(self, state: BuildState, failed: bool) -> None:
        """On failure, delete the copies that did arrive (the build cloud's is the snapshot's)."""
        if not failed:
            return
        for cloud_name, image_id in list(state.copies.items()):
            if cloud_name != self.options.cloud:
                state.clouds[cloud_name].delete_image(image_id)
            del state.copies[cloud_name]
        state.images.clear()


@dataclasses.dataclass
class PruneStep:
    """Keep the newest revisions in each cloud that got the image; never a protected one."""

    options: BuildOptions
    name: str = "prune"

    def run(self, state: BuildState) -> None:
        """Delete old revisions; a cloud that cannot be pruned is a failure, not a stop."""
        name = platforms.image_name(self.options.prefix, state.base, state.arch)
        for cloud_name, image_id in state.copies.items():
            cloud = state.clouds[cloud_name]
            try:
                records = [i.record() for i in cloud.images(name)]
                doomed = rev.to_prune(
                    records, name, self.options.keep_revisions, self.options.protect | {image_id}
                )
                for image in doomed:
                    cloud.delete_image(image.id)
                    logger.info("%s prune: deleted %s in %s", state.label, image.id, cloud_name)
            except Exception as exc:
                state.fail(cloud_name, self.name, str(exc) or type(exc).__name__)

    def cleanup(self, state: BuildState, failed: bool) -> None:
        """Nothing: deleted revisions cannot come back, and pruning happens last."""


def build_steps(
    options: BuildOptions, render: Renderer, context: RunContext
) -> Sequence[Step[BuildState]]:
    """Return the steps of one build, in order."""
    return [
        BaseImageStep(options),
        SecurityGroupStep(options, context),
        ServerStep(options, render, context),
        WaitStep(options, context),
        SnapshotStep(options, context),
        CopyStep(options, context),
        PruneStep(options),
    ]
