"""Step server: boot the builder from the base image with the rendered user-data.

Done once the server has left BUILD; after "No valid host" it is booted again. The snapshot
step asks for its deletion as soon as the image is active; this step's clean-up waits for it to
be gone, so its port frees the security group.
"""

import dataclasses
from collections.abc import Callable

from github_runner_image_builder.cloud.client import Cloud
from github_runner_image_builder.guest import userdata
from github_runner_image_builder.pipeline.steps import boot
from github_runner_image_builder.pipeline.steps.common import (
    Artefacts,
    GuestSecrets,
    RunContext,
    StepError,
    Target,
)
from image_builder_contract.names import Step
from image_builder_contract.spec import ImageSpec, SiteSpec

# Renders the user-data script; userdata.render_user_data, or a stand-in in tests.
Renderer = Callable[[userdata.UserDataOptions], str]


@dataclasses.dataclass
class ServerStep:
    """Render the user-data, boot on the chosen flavor and network, wait for the boot."""

    cloud: Cloud
    context: RunContext
    target: Target
    image: ImageSpec
    site: SiteSpec
    secrets: GuestSecrets
    render: Renderer
    canary: str  # planted next to the secrets; the verification looks for it
    name: Step = Step.SERVER

    def __post_init__(self) -> None:
        self.server = boot.OwnedServer(self.cloud, self.context, self.site)  # for its clean-up

    def run(self, artefacts: Artefacts) -> None:
        """Boot the builder; hand it and its placement on."""
        user_data = self.render(
            userdata.UserDataOptions(
                base=self.target.base,
                arch=self.target.arch,
                nonce=self.target.nonce,
                runner_version=self.image.runner_version,
                script_url=self.image.script_url,
                script_secrets=self.secrets.script_secrets,
                proxy=self.secrets.proxy,
                runner_binary_repo=self.image.runner_binary_repo,
                canary=self.canary,
            )
        )
        if artefacts.base_image_id is None or artefacts.builder_group_id is None:
            raise StepError("no base image or security group to boot with")
        artefacts.placement = boot.choose_placement(
            self.cloud, self.site.flavor, self.site.network, self.target.label
        )
        spec = boot.Boot(
            name=self.target.resource_name("builder"),
            image_id=artefacts.base_image_id,
            group_id=artefacts.builder_group_id,
            user_data=user_data,
            nonce=self.target.nonce,
            timeout=self.site.timeout,
            label=self.target.label,
        )
        artefacts.builder = self.server.boot(spec, artefacts.placement)

    def cleanup(self, artefacts: Artefacts, failed: bool) -> None:
        """Delete the server and wait until it is gone, so its port frees the security group."""
        self.server.delete()
