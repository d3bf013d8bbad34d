"""Step base-image: the build cloud has the current Ubuntu cloud image for (base, arch)."""

import dataclasses

from github_runner_image_builder.cloud.client import Cloud
from github_runner_image_builder.images import baseimage, properties
from github_runner_image_builder.pipeline.steps.common import Artefacts, Target
from image_builder_contract.names import Step


@dataclasses.dataclass
class BaseImageStep:
    """Find or fetch the base image; note its upstream SHA256 for the image's properties."""

    cloud: Cloud
    target: Target
    mirror_url: str
    name: Step = Step.BASE_IMAGE

    def run(self, artefacts: Artefacts) -> None:
        """Find or fetch the base image (checked against the mirror's SHA256SUMS)."""
        image_id, _ = baseimage.ensure_base_image(
            self.cloud, self.mirror_url, self.target.prefix, self.target.base, self.target.arch
        )
        artefacts.base_image_id = image_id
        # Read now, not at snapshot time: the snapshot follows the guest's power-off at once.
        base = self.cloud.get_image(image_id)
        artefacts.base_image_sha256 = base.properties.get(properties.UPSTREAM_SHA256, "")

    def cleanup(self, artefacts: Artefacts, failed: bool) -> None:
        """Nothing: a current base image is worth keeping, and a failed upload deletes itself."""
