"""Step wait: the builder's guest powers itself off; its console log says how it went."""

import dataclasses

from github_runner_image_builder.cloud.client import Cloud
from github_runner_image_builder.guest import marker
from github_runner_image_builder.pipeline.steps import boot
from github_runner_image_builder.pipeline.steps.common import (
    Artefacts,
    GuestSecrets,
    RunContext,
    StepError,
    Target,
)
from image_builder_contract.names import Step


@dataclasses.dataclass
class WaitStep:
    """Wait for SHUTOFF, judge the marker, keep the facts the verification compares with."""

    cloud: Cloud
    context: RunContext
    target: Target
    timeout: float
    secrets: GuestSecrets
    name: Step = Step.WAIT

    def run(self, artefacts: Artefacts) -> None:
        """Wait for the power-off; raise StepError unless the guest reported success."""
        if artefacts.builder is None:
            raise StepError("no server to wait for")
        console = boot.wait_for_console(self.cloud, self.context, artefacts.builder, self.timeout)
        boot.judge_console(console, self.target.nonce, self.secrets.values())
        artefacts.builder_facts = marker.parse_facts(console or "", self.target.nonce)

    def cleanup(self, artefacts: Artefacts, failed: bool) -> None:
        """Nothing of its own."""
