"""Steps security-group and verify-group: a no-ingress group for each server a build boots.

The test server's group is made while the builder's guest runs, so it costs the build no time;
its clean-up comes after the verify step's, once the test server is gone.
"""

import dataclasses

from github_runner_image_builder.cloud import backoff
from github_runner_image_builder.cloud.client import Cloud
from github_runner_image_builder.images import revisions as rev
from github_runner_image_builder.pipeline.steps.common import Artefacts, RunContext, Target
from image_builder_contract.names import Step

GROUP_DELETE_TIMEOUT = 60.0


@dataclasses.dataclass
class SecurityGroupStep:
    """Create the group `<prefix>-<kind>-…` of one server, with no ingress rule."""

    cloud: Cloud
    context: RunContext
    target: Target
    kind: str  # names.TEMPORARY_KINDS: "builder" or "verify"
    build_id: str | None
    name: Step
    enabled: bool = True  # a test server's group only when the build is verified
    group_id: str | None = None  # what this step made, for its clean-up

    @classmethod
    def for_builder(
        cls, cloud: Cloud, context: RunContext, target: Target, build_id: str | None
    ) -> "SecurityGroupStep":
        """Return the step of the builder's group."""
        return cls(cloud, context, target, "builder", build_id, Step.SECURITY_GROUP)

    @classmethod
    def for_test_server(
        cls, cloud: Cloud, context: RunContext, target: Target, build_id: str | None, enabled: bool
    ) -> "SecurityGroupStep":
        """Return the step of the test server's group (made only when the build is verified)."""
        return cls(cloud, context, target, "verify", build_id, Step.VERIFY_GROUP, enabled)

    def run(self, artefacts: Artefacts) -> None:
        """Create the group."""
        if not self.enabled:
            return
        of = "builder" if self.kind == "builder" else "test server"
        self.group_id = self.cloud.create_security_group(
            self.target.resource_name(self.kind),
            rev.group_description(f"github-runner-image-builder {of}: no ingress", self.build_id),
        )
        if self.kind == "builder":
            artefacts.builder_group_id = self.group_id
        else:
            artefacts.verify_group_id = self.group_id

    def cleanup(self, artefacts: Artefacts, failed: bool) -> None:
        """Delete the group; retried a while, as Neutron may release the server's port late."""
        if self.group_id is None:
            return
        group_id = self.group_id
        backoff.retry(
            lambda: self.cloud.delete_security_group(group_id),
            GROUP_DELETE_TIMEOUT,
            sleep=self.context.sleep,
            clock=self.context.clock,
        )
        self.group_id = None
