"""Step snapshot: the stopped builder becomes an image, with the properties every copy carries.

Once the image is active the builder has served its purpose: its deletion is asked for at once
(it runs while the image is verified and copied, freeing quota and host for the test server);
the server step's clean-up only waits for it to be gone.
"""

import dataclasses
import datetime
from collections.abc import Callable

from github_runner_image_builder.cloud import backoff
from github_runner_image_builder.cloud.client import Cloud
from github_runner_image_builder.images import properties
from github_runner_image_builder.pipeline.steps import boot
from github_runner_image_builder.pipeline.steps.common import (
    Artefacts,
    RunContext,
    Snapshot,
    StepError,
    Target,
)
from image_builder_contract.names import Step
from image_builder_contract.spec import ImageSpec


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def image_properties(
    target: Target,
    image: ImageSpec,
    build_id: str | None,
    artefacts: Artefacts,
    now: datetime.datetime,
) -> dict[str, str]:
    """Return the Glance properties every copy of the built image carries."""
    tags = {properties.BUILD_ID: build_id} if build_id else {}
    return {
        **tags,
        **properties.ubuntu(target.base, target.arch),
        properties.BASE: target.base.codename,
        properties.ARCH: target.arch.github,
        properties.RUNNER_VERSION: image.runner_version or "latest",
        properties.RUNNER_BINARY_REPO: image.runner_binary_repo,
        properties.BASE_SERIAL: target.base.serial or "current",
        properties.BUILT_BY_US: now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        properties.BASE_IMAGE_ID: artefacts.base_image_id or "",
        properties.BASE_IMAGE_SHA256: artefacts.base_image_sha256,
    }


@dataclasses.dataclass
class SnapshotStep:
    """Snapshot the stopped server and wait for the image to become active."""

    cloud: Cloud
    context: RunContext
    target: Target
    image: ImageSpec
    build_id: str | None
    timeout: float
    transit: bool  # the build cloud gets no copy: the snapshot goes once copied
    now: Callable[[], datetime.datetime] = _utcnow
    name: Step = Step.SNAPSHOT
    snapshot_id: str | None = None  # what this step made, for its clean-up

    def run(self, artefacts: Artefacts) -> None:
        """Create the snapshot with the image's properties; wait until active."""
        builder = artefacts.builder
        if builder is None:
            raise StepError("no server to snapshot")
        properties = image_properties(
            self.target, self.image, self.build_id, artefacts, self.now()
        )
        self.snapshot_id = snapshot_id = self.cloud.snapshot_server(
            builder.id, self.target.image_name, properties
        )
        artefacts.snapshot = Snapshot(snapshot_id, properties)

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
                self.timeout,
                f"snapshot {snapshot_id} to become active",
                self.context.cancellation,
            )
        except backoff.WaitTimeoutError as exc:
            raise StepError(str(exc)) from exc
        boot.ask_to_delete(
            self.cloud, self.context, builder, f"{self.target.label} snapshot", "the builder"
        )

    def cleanup(self, artefacts: Artefacts, failed: bool) -> None:
        """Delete the snapshot when the build failed or it was only a transit copy."""
        if self.snapshot_id and (failed or self.transit):
            self.cloud.delete_image(self.snapshot_id)
            self.snapshot_id = None
