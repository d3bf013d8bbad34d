"""The steps of one build of (base, arch), one module each, each built with only its inputs.

base-image → security-group → server → verify-group → wait → snapshot → verify → copy → prune;
`multistep` then runs the clean-ups in reverse: the test server, its group, the snapshot when it
was only a transit copy (or the build failed), the builder server, and its group.
"""

from collections.abc import Mapping, Sequence
from secrets import token_hex

from github_runner_image_builder.cloud.client import Cloud
from github_runner_image_builder.pipeline.multistep import Step
from github_runner_image_builder.pipeline.steps.base_image import BaseImageStep
from github_runner_image_builder.pipeline.steps.common import (
    Artefacts,
    GuestSecrets,
    RunContext,
    Target,
)
from github_runner_image_builder.pipeline.steps.copy import CopyStep
from github_runner_image_builder.pipeline.steps.prune import PruneStep
from github_runner_image_builder.pipeline.steps.security_group import SecurityGroupStep
from github_runner_image_builder.pipeline.steps.server import Renderer, ServerStep
from github_runner_image_builder.pipeline.steps.snapshot import SnapshotStep
from github_runner_image_builder.pipeline.steps.verify import VerifyStep
from github_runner_image_builder.pipeline.steps.wait import WaitStep
from image_builder_contract.spec import BuildSpec


def build_steps(  # noqa: PLR0917 - every argument is of another type
    spec: BuildSpec,
    secrets: GuestSecrets,
    render: Renderer,
    context: RunContext,
    target: Target,
    clouds: Mapping[str, Cloud],
) -> Sequence[Step[Artefacts]]:
    """Return the steps of one build, in order; `clouds`: a connection to each cloud by name."""
    site = spec.site
    cloud = clouds[site.cloud]
    targets = {name: clouds[name] for name in spec.targets()}
    # Planted by the builder's user-data next to the secrets; the verification looks for it.
    canary = token_hex(16)
    is_result = site.cloud in targets
    return [
        BaseImageStep(cloud, target, spec.image.cloud_images_url),
        SecurityGroupStep.for_builder(cloud, context, target, site.build_id),
        ServerStep(cloud, context, target, spec.image, site, secrets, render, canary),
        SecurityGroupStep.for_test_server(
            cloud, context, target, site.build_id, spec.verify.enabled
        ),
        WaitStep(cloud, context, target, site.timeout, secrets),
        SnapshotStep(
            cloud, context, target, spec.image, site.build_id, site.timeout, not is_result
        ),
        VerifyStep(
            cloud, context, target, spec.verify, spec.image, site, secrets, canary, is_result
        ),
        CopyStep(site.cloud, cloud, targets, context, target),
        PruneStep(targets, target, spec.prune),
    ]


__all__ = ["Artefacts", "GuestSecrets", "Renderer", "RunContext", "Target", "build_steps"]
