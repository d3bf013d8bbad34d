"""Step prune: keep the newest revisions in each cloud that got the image, none protected."""

import dataclasses
import logging
from collections.abc import Mapping

from github_runner_image_builder.cloud.client import Cloud
from github_runner_image_builder.images import revisions as rev
from github_runner_image_builder.pipeline.steps.common import Artefacts, Target, record_failure
from image_builder_contract.names import Step
from image_builder_contract.spec import PruneSpec

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class PruneStep:
    """Delete old revisions; a cloud that cannot be pruned is a failure, not a stop."""

    clouds: Mapping[str, Cloud]  # by name: every cloud that may have got the image
    target: Target
    prune: PruneSpec
    name: Step = Step.PRUNE

    def run(self, artefacts: Artefacts) -> None:
        """Prune each cloud the image reached, keeping the new image whatever its age."""
        name = self.target.image_name
        for cloud_name, image_id in artefacts.copies.items():
            cloud = self.clouds[cloud_name]
            try:
                records = [i.record() for i in cloud.images(name)]
                doomed = rev.to_prune(
                    records, name, self.prune.keep_revisions, self.prune.protect | {image_id}
                )
                for image in doomed:
                    cloud.delete_image(image.id)
                    logger.info(
                        "%s prune: deleted %s in %s", self.target.label, image.id, cloud_name
                    )
            except Exception as exc:
                error = str(exc) or type(exc).__name__
                record_failure(artefacts, self.target, cloud_name, self.name, error)

    def cleanup(self, artefacts: Artefacts, failed: bool) -> None:
        """Nothing: deleted revisions cannot come back, and pruning happens last."""
