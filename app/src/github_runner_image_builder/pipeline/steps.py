"""The steps of one build of (base, arch), each with its clean-up (see `pipeline`).

base-image → security-group → server → wait → snapshot → verify → copy → prune; the clean-ups
then delete the test server and its group, the snapshot when it was only a transit copy (or the
build failed, verification included), the builder server, and its security group, in that order.
Every wait goes through the run's one `Poller` (see `RunContext`), and every run-side wait stops
at a cancellation.
"""

import dataclasses
import datetime
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from secrets import token_hex

from github_runner_image_builder.cancel import NEVER, Cancellation
from github_runner_image_builder.cloud import backoff, placement, servers
from github_runner_image_builder.cloud.client import Cloud, ImageInfo
from github_runner_image_builder.cloud.poller import Poller
from github_runner_image_builder.guest import contents, marker, userdata, verification
from github_runner_image_builder.images import baseimage, copying
from github_runner_image_builder.images import revisions as rev
from github_runner_image_builder.pipeline.multistep import Step
from github_runner_image_builder.report import Failure, ImageResult
from image_builder_contract import names, platforms, rules

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
    proxy: str | None = None  # may carry credentials: never logged, never in argv
    runner_binary_repo: str = platforms.UPSTREAM_RUNNER_REPO
    timeout: float = 3600.0
    cloud_images_url: str = "https://cloud-images.ubuntu.com"
    boot_retry: servers.BootRetry = dataclasses.field(default_factory=servers.BootRetry)
    verify: bool = True
    verify_script_url: str | None = None
    verify_timeout: float = 1200.0
    # Tags every server, security group and image of this run (revisions.BUILD_ID), so that
    # `clean --build-id` finds a dead run's resources at once, whatever their age.
    build_id: str | None = None

    def secret_values(self) -> dict[str, str]:
        """Return what no report may show: the script secrets and the proxy's credentials."""
        found = dict(self.script_secrets)
        if self.proxy:
            proxy_parts = rules.proxy_secrets(self.proxy)
            found.update({f"proxy {index}": part for index, part in enumerate(proxy_parts)})
        return found

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
    server_created_at: float | None = None  # the poller's clock (`servers.Booted`)
    server_delete_asked_at: float | None = None  # the poller's clock, once asked for
    # The flavor and network the builder booted on; the test server boots on the same.
    flavor_id: str | None = None
    network_id: str | None = None
    snapshot_id: str | None = None
    properties: dict[str, str] = dataclasses.field(default_factory=dict)
    # Planted by the builder's user-data next to the secrets; the verification looks for it.
    canary: str = dataclasses.field(default_factory=lambda: token_hex(16))
    builder_facts: dict[str, str] = dataclasses.field(default_factory=dict)
    verify_group_id: str | None = None
    verify_server_id: str | None = None
    verify_server_delete_asked_at: float | None = None  # asked once its console was read
    software: dict[str, str] = dataclasses.field(default_factory=dict)
    checks: tuple[marker.Check, ...] = ()
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
    # Longest first: a proxy URL goes whole before its password alone.
    for value in sorted(secrets.values(), key=len, reverse=True):
        if value:
            text = text.replace(value, "***")
    return text


def _name(options: BuildOptions, state: BuildState, kind: str) -> str:
    # `clean` finds what a crashed build left by these kinds (names.TEMPORARY_KINDS).
    return names.resource_name(options.prefix, kind, state.base, state.arch, state.nonce)


def create_security_group(options: BuildOptions, state: BuildState, kind: str, of: str) -> str:
    """Create the no-ingress group `<prefix>-<kind>-…` of one server a build boots (`of`)."""
    return state.clouds[options.cloud].create_security_group(
        _name(options, state, kind),
        rev.group_description(f"github-runner-image-builder {of}: no ingress", options.build_id),
    )


def delete_security_group(cloud: Cloud, group_id: str, context: RunContext) -> None:
    """Delete a group; retried a while, as Neutron may release the server's port late."""
    backoff.retry(
        lambda: cloud.delete_security_group(group_id),
        GROUP_DELETE_TIMEOUT,
        sleep=context.sleep,
        clock=context.clock,
    )


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


def boot_server(
    cloud: Cloud,
    options: BuildOptions,
    context: RunContext,
    boot: Boot,
    record: Callable[[str | None], None],
    *,
    state: "BuildState",
) -> servers.Booted:
    """Boot a server on the chosen flavor and network (again after "No valid host").

    `record` learns each server ID as it is created (None once it is deleted for a retry), so
    the step's clean-up always knows what to delete. The flavor and network are chosen once
    per build (kept in `state`): the test server needs no second lookup.
    """
    if state.flavor_id is None or state.network_id is None:
        flavor = placement.choose_flavor(cloud.flavors(), options.flavor)
        network = placement.choose_network(cloud.networks(), options.network)
        logger.info("%s server: flavor %s, network %s", boot.label, flavor.name, network.name)
        state.flavor_id, state.network_id = flavor.id, network.id
    flavor_id, network_id = state.flavor_id, state.network_id
    metadata = {"grib_nonce": boot.nonce}
    if options.build_id:
        metadata[rev.BUILD_ID] = options.build_id

    def create() -> str:
        return cloud.create_server(
            boot.name,
            image_id=boot.image_id,
            flavor_id=flavor_id,
            network_id=network_id,
            security_group_id=boot.group_id,
            user_data=boot.user_data,
            metadata=metadata,
        )

    return servers.boot(
        cloud,
        context.poller,
        create,
        record,
        timeout=boot.timeout,
        label=boot.label,
        retry=options.boot_retry,
        cancellation=context.cancellation,
        sleep=context.sleep,
        clock=context.clock,
    )


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
        state.group_id = create_security_group(self.options, state, "builder", "builder")

    def cleanup(self, state: BuildState, failed: bool) -> None:
        """Delete the group; retried a while, as Neutron may release the server's port late."""
        if state.group_id:
            cloud = state.clouds[self.options.cloud]
            delete_security_group(cloud, state.group_id, self.context)
            state.group_id = None


@dataclasses.dataclass
class VerifyGroupStep:
    """The test server's own no-ingress group, made while the builder's guest runs.

    Done here rather than in the verify step, it costs the build no time (the guest takes
    minutes); its clean-up comes after the verify step's, once the test server is gone.
    """

    options: BuildOptions
    context: RunContext
    name: str = "verify-group"

    def run(self, state: BuildState) -> None:
        """Create the group, unless the build is not verified."""
        if not self.options.verify:
            return
        state.verify_group_id = create_security_group(self.options, state, "verify", "test server")

    def cleanup(self, state: BuildState, failed: bool) -> None:
        """Delete the group (retried a while, like the builder's)."""
        if state.verify_group_id:
            cloud = state.clouds[self.options.cloud]
            delete_security_group(cloud, state.verify_group_id, self.context)
            state.verify_group_id = None


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
        """Render the user-data, boot on the chosen flavor and network, wait for the boot."""
        cloud = state.clouds[self.options.cloud]
        user_data = self.render(
            userdata.UserDataOptions(
                base=state.base,
                arch=state.arch,
                nonce=state.nonce,
                runner_version=self.options.runner_version,
                script_url=self.options.script_url,
                script_secrets=self.options.script_secrets,
                proxy=self.options.proxy,
                runner_binary_repo=self.options.runner_binary_repo,
                canary=state.canary,
            )
        )
        if state.base_image_id is None or state.group_id is None:
            raise StepError("no base image or security group to boot with")
        boot = Boot(
            name=_name(self.options, state, "builder"),
            image_id=state.base_image_id,
            group_id=state.group_id,
            user_data=user_data,
            nonce=state.nonce,
            timeout=self.options.timeout,
            label=state.label,
        )

        def record(server_id: str | None) -> None:
            state.server_id = server_id

        booted = boot_server(cloud, self.options, self.context, boot, record, state=state)
        state.server_created_at = booted.created_at

    def cleanup(self, state: BuildState, failed: bool) -> None:
        """Delete the server and wait until it is gone, so its port frees the security group."""
        if not state.server_id:
            return
        servers.delete(
            state.clouds[self.options.cloud],
            self.context.poller,
            state.server_id,
            asked_at=state.server_delete_asked_at,
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


def wait_for_console(
    cloud: Cloud, context: RunContext, server_id: str, timeout: float, *, since: float | None
) -> str | None:
    """Wait for a guest to power itself off and return its console log (None: the cloud has none).

    The one completion path of every server a build boots (builder and test server), through
    the run's poller: ERROR, disappearance or timeout raise `servers.ServerError`; a
    cancellation raises `Cancelled` at the next tick. `since`: the server's creation
    (`servers.Booted.created_at`): every answer since then counts.
    """
    servers.wait_for_power_off(
        context.poller, server_id, timeout, context.cancellation, since=since
    )
    return cloud.console_output(server_id)


@dataclasses.dataclass
class WaitStep:
    """Wait for the guest to power itself off, then read its verdict from the console log."""

    options: BuildOptions
    context: RunContext
    name: str = "wait"

    def run(self, state: BuildState) -> None:
        """Wait for SHUTOFF, judge the marker, keep the facts the verification compares with."""
        cloud = state.clouds[self.options.cloud]
        if state.server_id is None:
            raise StepError("no server to wait for")
        console = wait_for_console(
            cloud,
            self.context,
            state.server_id,
            self.options.timeout,
            since=state.server_created_at,
        )
        judge_console(console, state.nonce, self.options.secret_values())
        state.builder_facts = marker.parse_facts(console or "", state.nonce)

    def cleanup(self, state: BuildState, failed: bool) -> None:
        """Nothing of its own."""


def image_properties(
    options: BuildOptions, state: BuildState, now: datetime.datetime
) -> dict[str, str]:
    """Return the Glance properties every copy of the built image carries."""
    tags = {rev.BUILD_ID: options.build_id} if options.build_id else {}
    return {
        **tags,
        **baseimage.base_properties(state.base, state.arch),
        "grib_base": state.base.codename,
        "grib_arch": state.arch.github,
        "grib_runner_version": options.runner_version or "latest",
        "grib_runner_binary_repo": options.runner_binary_repo,
        # The Ubuntu cloud image serial the build was pinned to, or "current".
        "grib_base_serial": state.base.serial or "current",
        rev.BUILT_BY_US: now.strftime("%Y-%m-%dT%H:%M:%SZ"),
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
        name = names.image_name(self.options.prefix, state.base, state.arch)
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
        # The builder has served its purpose: its deletion runs while the image is verified
        # and copied (freeing its quota and host for the test server, even after "No valid
        # host"), and the server step's cleanup only waits for it to be gone.
        try:
            state.server_delete_asked_at = servers.request_delete(
                cloud, self.context.poller, state.server_id
            )
        except Exception as exc:
            logger.warning("%s snapshot: could not delete the builder yet: %s", state.label, exc)

    def cleanup(self, state: BuildState, failed: bool) -> None:
        """Delete the snapshot when the build failed or it was only a transit copy."""
        transit = self.options.cloud not in self.options.targets()
        if state.snapshot_id and (failed or transit):
            state.clouds[self.options.cloud].delete_image(state.snapshot_id)
            state.snapshot_id = None


def _log_checks(label: str, checks: Sequence[marker.Check]) -> None:
    """Log each check on a line of its own, for the operator reading the build log."""
    for check in checks:
        if check.ok:
            logger.info("%s verify: check %s passed", label, check.name)
        else:
            logger.error("%s verify: check %s failed: %s", label, check.name, check.detail)


@dataclasses.dataclass
class VerifyStep:
    """Boot a test server from the snapshot; it checks the image and reports on its console.

    It gets a no-ingress security group of its own (the verify-group step made it while the
    builder ran), the builder's flavor and network rules and a config drive. A failed check, no
    result or a timeout fails the build: the snapshot's clean-up then deletes the image, so
    nothing unverified is ever copied.
    """

    options: BuildOptions
    context: RunContext
    name: str = "verify"

    def run(self, state: BuildState) -> None:
        """Boot, wait, judge; record the checks and the software report as properties."""
        cloud = state.clouds[self.options.cloud]
        if not self.options.verify:
            logger.warning(
                "%s verify: skipped (--no-verify): this image is unverified", state.label
            )
            self._record(cloud, state, None)
            return
        if state.snapshot_id is None or state.server_id is None:
            raise StepError("no snapshot to verify")
        options = self._verify_options(state)
        user_data = verification.render_verify_user_data(options)
        if state.verify_group_id is None:
            raise StepError("no security group for the test server")
        # `<prefix>-verify-…`: the poller's server list and `clean` both see it.
        name = _name(self.options, state, "verify")
        # One time limit for the whole verification: boot (and boots again), run, power-off.
        deadline = self.context.clock() + self.options.verify_timeout
        boot = Boot(
            name=name,
            image_id=state.snapshot_id,
            group_id=state.verify_group_id,
            user_data=user_data,
            nonce=options.nonce,
            timeout=self.options.verify_timeout,
            label=f"{state.label} verify",
        )

        def record(server_id: str | None) -> None:
            state.verify_server_id = server_id

        booted = boot_server(cloud, self.options, self.context, boot, record, state=state)
        server_id = booted.server_id
        console = wait_for_console(
            cloud,
            self.context,
            server_id,
            max(0.0, deadline - self.context.clock()),
            since=booted.created_at,
        )
        # The test server has said all it will: it goes while the image is copied, and the
        # clean-up only waits for it to be gone.
        try:
            state.verify_server_delete_asked_at = servers.request_delete(
                cloud, self.context.poller, server_id
            )
        except Exception as exc:
            logger.warning("%s verify: could not delete the test server yet: %s", state.label, exc)
        try:
            report = verification.judge(console, options)
        except verification.VerifyError as exc:
            state.checks = exc.checks
            _log_checks(state.label, exc.checks)
            raise StepError(str(exc)) from exc
        _log_checks(state.label, report.checks)
        state.checks = report.checks
        state.software = dict(report.software)
        self._record(cloud, state, report)

    def _verify_options(self, state: BuildState) -> verification.VerifyOptions:
        runner_version = state.builder_facts.get("runner-version") or (
            rules.normalize_runner_version(self.options.runner_version)
            if self.options.runner_version
            else ""
        )
        return verification.VerifyOptions(
            base=state.base,
            arch=state.arch,
            nonce=marker.new_nonce(),
            builder_nonce=state.nonce,
            builder_instance_id=state.server_id or "",
            builder_machine_id=state.builder_facts.get("machine-id", ""),
            runner_version=runner_version,
            proxy=contents.expected_proxy(
                rules.normalize_proxy(self.options.proxy) if self.options.proxy else ""
            ),
            canary=state.canary,
            script_secrets=self.options.script_secrets,
            script_url=self.options.verify_script_url,
        )

    def _record(self, cloud: Cloud, state: BuildState, report: marker.VerifyReport | None) -> None:
        extra = verification.properties(report)
        state.properties.update(extra)
        # A transit snapshot goes once copied, and its copies get every property at upload:
        # only a snapshot that is itself one of the results needs them set.
        if state.snapshot_id and self.options.cloud in self.options.targets():
            cloud.update_image_properties(state.snapshot_id, extra)

    def cleanup(self, state: BuildState, failed: bool) -> None:
        """Delete the test server, whatever happened (its group is the verify-group step's)."""
        if state.verify_server_id:
            servers.delete(
                state.clouds[self.options.cloud],
                self.context.poller,
                state.verify_server_id,
                asked_at=state.verify_server_delete_asked_at,
            )
            state.verify_server_id = None


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
        name = names.image_name(self.options.prefix, state.base, state.arch)
        for cloud_name in self.options.targets():
            if cloud_name in state.copies:
                state.images.append(
                    ImageResult(
                        name,
                        state.base.codename,
                        state.arch.github,
                        cloud_name,
                        state.copies[cloud_name],
                        software=dict(state.software),
                        checks=state.checks,
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
        name = names.image_name(self.options.prefix, state.base, state.arch)
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
        VerifyGroupStep(options, context),
        WaitStep(options, context),
        SnapshotStep(options, context),
        VerifyStep(options, context),
        CopyStep(options, context),
        PruneStep(options),
    ]
