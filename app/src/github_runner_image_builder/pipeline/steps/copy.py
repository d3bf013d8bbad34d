"""Step copy: the image reaches every upload cloud at once, streamed from the build cloud.

The build fails only when no cloud got it; a cloud that did not is a failure of its own.
"""

import dataclasses
import logging
from collections.abc import Mapping

from github_runner_image_builder.cloud.client import Cloud, ImageInfo
from github_runner_image_builder.images import copying
from github_runner_image_builder.pipeline.steps.common import (
    Artefacts,
    RunContext,
    StepError,
    Target,
    record_failure,
)
from image_builder_contract.names import Step
from image_builder_contract.report import ImageResult

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class CopyStep:
    """Stream the snapshot to the upload clouds; record per-cloud failures."""

    build_cloud_name: str
    build_cloud: Cloud
    targets: Mapping[str, Cloud]  # every cloud that gets the image, by name (in order)
    context: RunContext
    target: Target
    name: Step = Step.COPY
    copied: dict[str, str] = dataclasses.field(default_factory=dict)  # what this step made

    def run(self, artefacts: Artefacts) -> None:
        """Copy; hand on every cloud's image ID and the images of the report."""
        snapshot = artefacts.snapshot
        if snapshot is None:
            raise StepError("no snapshot to copy")
        copies: dict[str, str] = {}
        if self.build_cloud_name in self.targets:
            copies[self.build_cloud_name] = snapshot.id
        others = {n: c for n, c in self.targets.items() if n != self.build_cloud_name}
        if others:
            source = self.build_cloud.get_image(snapshot.id)
            logger.info(
                "%s copy: %s MiB to %s, holding at most %d MiB",
                self.target.label,
                "?" if source.size is None else f"{source.size / 2**20:.0f}",
                ", ".join(others),
                copying.memory_bound() // 2**20,
            )
            results = copying.copy_image(
                self.build_cloud,
                source,
                others,
                properties=snapshot.properties,
                cancellation=self.context.cancellation,
            )
            for cloud_name, result in results.items():
                if isinstance(result, ImageInfo):
                    copies[cloud_name] = self.copied[cloud_name] = result.id
            # A cancelled copy fails every cloud: that is the cancellation, not one cloud's fault.
            self.context.cancellation.check()
            for cloud_name, result in results.items():
                if not isinstance(result, ImageInfo):
                    error = str(result) or type(result).__name__
                    record_failure(artefacts, self.target, cloud_name, self.name, error)
        artefacts.copies = copies
        if not copies:
            raise StepError("the image reached no upload cloud")
        for cloud_name in self.targets:
            if cloud_name in copies:
                artefacts.images.append(
                    ImageResult(
                        self.target.image_name,
                        self.target.base.codename,
                        self.target.arch.github,
                        cloud_name,
                        copies[cloud_name],
                        software=dict(artefacts.software),
                        checks=artefacts.checks,
                    )
                )

    def cleanup(self, artefacts: Artefacts, failed: bool) -> None:
        """On failure, delete the copies that did arrive (the build cloud's is the snapshot's)."""
        if not failed:
            return
        for cloud_name, image_id in list(self.copied.items()):
            self.targets[cloud_name].delete_image(image_id)
            del self.copied[cloud_name]
        artefacts.copies.clear()
        artefacts.images.clear()
