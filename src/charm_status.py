"""What the unit says: its status, chosen by one pure function, and its answers to `run`.

The charm gathers the facts in collect-status (StatusFacts) and `compute_status` picks the
status and words it; the summary and the log lines of a finished build live beside it. No
machine, no cloud, no Juju model here: every wording is tested without a charm.
"""

import dataclasses
import logging
from collections.abc import Sequence

import ops

from image_builder_contract import text
from image_builder_contract.names import Step
from job import BUILD_CLOUD, BuildResult, ResultKind
from job_launcher import StartOutcome
from job_records import BuildsNow

logger = logging.getLogger(__name__)

STANDBY = (
    "this unit is on standby: the leader {leader} builds; run the action there: "
    "juju run {leader} run"
)
NO_CREDENTIALS = (
    "no image relation has given OpenStack credentials yet; "
    "integrate a runner charm first: juju integrate {app}:image github-runner:image"
)
UNKNOWN_LEADER = "(not known yet)"
NO_BUILDS = BuildsNow(running=False, queued=False, current=None, last_result=None)


@dataclasses.dataclass(frozen=True)
class StatusFacts:
    """What collect-status knows; the charm gathers `builds` on only once `ready`."""

    config_problem: str | None = None  # why the config cannot be used; None when it can
    write_problem: str | None = None  # the first file this hook could not write
    integrated: bool = False  # an image relation exists
    clouds: int = 0  # requirer clouds that gave credentials
    leader: bool = False
    leader_name: str = ""  # the unit the leader says it is ('' before one said so)
    verify_images: bool = True
    builds: BuildsNow = NO_BUILDS
    set_aside: tuple[str, ...] = ()  # files set aside as unreadable lately, newest first
    served: int = 0  # requirer clouds the catalogue serves

    @property
    def ready(self) -> bool:
        """Return whether the unit is past Blocked and Waiting, where its builds matter."""
        problem = self.config_problem is not None or self.write_problem is not None
        return not problem and self.integrated and self.clouds > 0


def compute_status(facts: StatusFacts) -> ops.StatusBase:
    """Return the unit's status: the first problem, else what its builds are doing."""
    if (problem := _problem(facts)) is not None:
        return problem
    builds, note = facts.builds, set_aside_note(facts.set_aside)
    if builds.running and builds.current is not None:
        queued = ", rebuild queued" if builds.queued and facts.leader else ""
        started = builds.current.started_at.strftime("%H:%M")
        handing = "" if facts.leader else "; its images go to the leader"
        return ops.MaintenanceStatus(
            f"Building images since {started} UTC{queued}{handing}" + note
        )
    served = f"{facts.served} of {facts.clouds} clouds"
    if not facts.leader:
        leader = facts.leader_name or UNKNOWN_LEADER
        return ops.ActiveStatus(
            f"Standby: serving the images of the leader {leader} ({served})" + note
        )
    if builds.last_result is not None:
        return ops.ActiveStatus(
            summary(builds.last_result) + unverified(facts.verify_images) + note
        )
    first = f"No build has run on this unit yet; {served} served"
    return ops.ActiveStatus(first + unverified(facts.verify_images) + note)


def _problem(facts: StatusFacts) -> ops.StatusBase | None:
    """Return the status of a unit that cannot build (Blocked, Waiting); None when it can."""
    if facts.config_problem is not None:
        return ops.BlockedStatus(facts.config_problem)
    if facts.write_problem is not None:
        return ops.BlockedStatus(facts.write_problem)
    if not facts.integrated:
        return ops.BlockedStatus("image integration required")
    if not facts.clouds:
        return ops.WaitingStatus("waiting for OpenStack credentials from a requirer")
    return None


def run_results(outcome: StartOutcome) -> dict[str, str]:
    """Return the `run` action's results for a job it started or queued."""
    if outcome.started:
        return {"result": "started", "build-id": outcome.run_id}
    return {
        "result": "queued",
        "build-id": outcome.run_id,
        "detail": "a build is running; one rebuild will start when it ends",
    }


def log_result(result: BuildResult) -> None:
    """Log a finished build: one line, then one per failure."""
    # Every field from the CLI's answer is data: one line each, bounded (text.one_line).
    logger.info(
        "build %s finished: exit %s, %d images, %d failed",
        result.run_id,
        result.exit_code,
        len(result.images),
        len(result.failures),
    )
    for failure in result.failures:
        logger.error(
            "build failed: %s/%s cloud %s step %s: %s",
            *(text.one_line(f, 100) for f in (failure.base, failure.arch, failure.cloud)),
            text.one_line(failure.where, 100),
            text.one_line(failure.error),
        )
    if result.error:
        logger.error("build %s failed: %s", result.run_id, text.one_line(result.error))


def set_aside_note(names: Sequence[str]) -> str:
    """Return the status suffix naming state files set aside as unreadable, when there are any."""
    if not names:
        return ""
    more = f" and {len(names) - 1} more" if len(names) > 1 else ""
    return f"; unreadable state file set aside: {names[0]}{more} (recovered)"


def unverified(verify_images: bool) -> str:
    """Return the status suffix that says images go out unverified, when they do."""
    return "" if verify_images else " (images unverified: verify-images is off)"


def summary(result: BuildResult) -> str:
    """Return the one-line status of a finished build."""
    when = result.finished_at.strftime("%H:%M")
    images = len([i for i in result.images if i.cloud != BUILD_CLOUD])
    plural = "" if images == 1 else "s"
    if result.kind == ResultKind.LOOKUP:
        return f"Found {images} existing image{plural} {when} UTC; no build needed"
    if result.kind == ResultKind.COPY:
        line = f"Copied {images} image{plural} from the build cloud {when} UTC; no build needed"
        if result.failures:
            first = result.failures[0]
            line += (
                f" ({len(result.failures)} failed: {first.base}/{first.arch} in {first.cloud} "
                f"at {first.where}: {text.one_line(first.error, 80)})"
            )
        return line
    if result.error:
        return f"Last build {when} UTC failed: {text.one_line(result.error, text.STATUS_LIMIT)}"
    failed_verify = [f for f in result.failures if f.where == Step.VERIFY]
    if failed_verify:
        # The operator's first question: which image failed which check.
        first = failed_verify[0]
        line = (
            f"Last build {when} UTC: {first.base}/{first.arch} failed verify: "
            f"{text.one_line(first.error, text.STATUS_LIMIT)}"
        )
        others = len(result.failures) - 1
        return line + (f" ({images} built, {others} more failed)" if images or others else "")
    line = f"Last build {when} UTC: {images} image{plural}, "
    line += f"{len(result.failures)} failed"
    if result.failures:
        first = result.failures[0]
        where = f" in {first.cloud}" if first.cloud else ""
        line += f" ({first.base}/{first.arch}{where} at {first.where or 'unknown step'}"
        line += f": {text.one_line(first.error, 80)})" if first.error else ")"
    return line
