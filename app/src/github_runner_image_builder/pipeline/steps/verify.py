"""Step verify: a test server boots from the new image, checks it and reports on its console.

It gets a no-ingress group of its own (the verify-group step made it while the builder ran), the
builder's placement and a config drive. A failed check, no result or a timeout fails the build:
the snapshot's clean-up then deletes the image, so nothing unverified is ever copied.
"""

import dataclasses
import logging
from collections.abc import Sequence

from github_runner_image_builder.cloud.client import Cloud
from github_runner_image_builder.guest import contents, marker, verification
from github_runner_image_builder.pipeline.steps import boot
from github_runner_image_builder.pipeline.steps.common import (
    Artefacts,
    GuestSecrets,
    RunContext,
    StepError,
    Target,
)
from image_builder_contract import rules
from image_builder_contract.checks import Check
from image_builder_contract.names import Step
from image_builder_contract.spec import ImageSpec, SiteSpec, VerifySpec

logger = logging.getLogger(__name__)


def _log_checks(label: str, checks: Sequence[Check]) -> None:
    """Log each check on a line of its own, for the operator reading the build log."""
    for check in checks:
        if check.ok:
            logger.info("%s verify: check %s passed", label, check.name)
        else:
            logger.error("%s verify: check %s failed: %s", label, check.name, check.detail)


@dataclasses.dataclass
class VerifyStep:
    """Boot, wait, judge; record the checks and the software report as properties."""

    cloud: Cloud
    context: RunContext
    target: Target
    verify: VerifySpec
    image: ImageSpec
    site: SiteSpec
    secrets: GuestSecrets
    canary: str  # what the builder planted next to the secrets
    set_properties: bool  # the snapshot is itself a result (not a transit copy)
    name: Step = Step.VERIFY

    def __post_init__(self) -> None:
        self.server = boot.OwnedServer(self.cloud, self.context, self.site)  # for its clean-up

    def run(self, artefacts: Artefacts) -> None:
        """Verify the snapshot, or mark it unverified when verification is off."""
        if not self.verify.enabled:
            logger.warning(
                "%s verify: skipped (--no-verify): this image is unverified", self.target.label
            )
            self._record(artefacts, None)
            return
        snapshot, builder = artefacts.snapshot, artefacts.builder
        if snapshot is None or builder is None or artefacts.placement is None:
            raise StepError("no snapshot to verify")
        options = self._verify_options(artefacts, builder.id)
        user_data = verification.render_verify_user_data(options)
        if artefacts.verify_group_id is None:
            raise StepError("no security group for the test server")
        # One time limit for the whole verification: boot (and boots again), run, power-off.
        deadline = self.context.clock() + self.verify.timeout
        spec = boot.Boot(
            # `<prefix>-verify-…`: the poller's server list and `clean` both see it.
            name=self.target.resource_name("verify"),
            image_id=snapshot.id,
            group_id=artefacts.verify_group_id,
            user_data=user_data,
            nonce=options.nonce,
            timeout=self.verify.timeout,
            label=f"{self.target.label} verify",
        )

        server = self.server.boot(spec, artefacts.placement)
        console = boot.wait_for_console(
            self.cloud, self.context, server, max(0.0, deadline - self.context.clock())
        )
        # The test server has said all it will: it goes while the image is copied, and the
        # clean-up only waits for it to be gone.
        boot.ask_to_delete(
            self.cloud, self.context, server, f"{self.target.label} verify", "the test server"
        )
        try:
            report = verification.judge(console, options)
        except verification.VerifyError as exc:
            artefacts.checks = exc.checks
            _log_checks(self.target.label, exc.checks)
            raise StepError(str(exc)) from exc
        _log_checks(self.target.label, report.checks)
        artefacts.checks = report.checks
        artefacts.software = dict(report.software)
        self._record(artefacts, report)

    def _verify_options(self, artefacts: Artefacts, builder_id: str) -> verification.VerifyOptions:
        facts = artefacts.builder_facts
        runner_version = facts.get(marker.RUNNER_VERSION_FACT) or (
            rules.normalize_runner_version(self.image.runner_version)
            if self.image.runner_version
            else ""
        )
        proxy = self.secrets.proxy
        return verification.VerifyOptions(
            base=self.target.base,
            arch=self.target.arch,
            nonce=marker.new_nonce(),
            builder_nonce=self.target.nonce,
            builder_instance_id=builder_id,
            builder_machine_id=facts.get(marker.MACHINE_ID_FACT, ""),
            runner_version=runner_version,
            proxy=contents.expected_proxy(rules.normalize_proxy(proxy) if proxy else ""),
            canary=self.canary,
            script_secrets=self.secrets.script_secrets,
            script_url=self.verify.script_url,
        )

    def _record(self, artefacts: Artefacts, report: marker.VerifyReport | None) -> None:
        extra = verification.properties(report)
        if artefacts.snapshot is None:
            return
        artefacts.snapshot.properties.update(extra)
        # A transit snapshot goes once copied, and its copies get every property at upload:
        # only a snapshot that is itself one of the results needs them set.
        if self.set_properties:
            self.cloud.update_image_properties(artefacts.snapshot.id, extra)

    def cleanup(self, artefacts: Artefacts, failed: bool) -> None:
        """Delete the test server, whatever happened (its group is the verify-group step's)."""
        self.server.delete()
