"""A run of builds: one pipeline per (base, arch), all in parallel, merged into one report."""

import logging
import time
from collections.abc import Callable
from concurrent import futures

from github_runner_image_builder.cancel import NEVER, Cancellation
from github_runner_image_builder.cloud.client import Cloud, name_prefix_filter
from github_runner_image_builder.cloud.poller import Poller
from github_runner_image_builder.guest import marker
from github_runner_image_builder.pipeline.multistep import Outcome, run_pipeline
from github_runner_image_builder.pipeline.steps import (
    Artefacts,
    GuestSecrets,
    Renderer,
    RunContext,
    Target,
    build_steps,
)
from image_builder_contract import platforms
from image_builder_contract.names import Phase, Step
from image_builder_contract.report import Failure, Report, Timing
from image_builder_contract.spec import BuildSpec

logger = logging.getLogger(__name__)

MAX_PARALLEL = 8


def report_of(
    spec: BuildSpec, outcomes: list[tuple[Target, Outcome[Artefacts], float]], poll_calls: int
) -> Report:
    """Merge the outcomes of every build (with its wall time) into the report on stdout."""
    report = Report(poll_calls=poll_calls)
    for target, outcome, total in outcomes:
        artefacts = outcome.state
        base, arch = target.base.codename, target.arch.github
        report.images.extend(artefacts.images)
        report.failures.extend(artefacts.failures)
        # A copy step that failed in every cloud has already said so, cloud by cloud.
        already_said = outcome.failed_step == Step.COPY and artefacts.failures
        if not outcome.ok and not already_said:
            report.failures.append(
                Failure(
                    base,
                    arch,
                    spec.site.cloud,
                    outcome.failed_step or "",
                    outcome.error or "",
                    checks=artefacts.checks if outcome.failed_step == Step.VERIFY else (),
                )
            )
        for step, error in outcome.cleanup_errors:
            report.failures.append(
                Failure(base, arch, spec.site.cloud, step, error, phase=Phase.CLEANUP)
            )
        report.timings.append(
            Timing(base, arch, dict(outcome.durations), outcome.cleanup_seconds, total)
        )
    return report


def run_builds(  # noqa: PLR0917 - tests replace the last three by position
    spec: BuildSpec,
    secrets: GuestSecrets,
    render: Renderer,
    open_cloud: Callable[[str], Cloud] = Cloud,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    *,
    cancellation: Cancellation = NEVER,
) -> Report:
    """Build every (base, arch) of `spec` in parallel and return the merged report."""
    image = spec.image
    combos = [(base, arch) for base in image.bases for arch in image.arches]
    # The poller lists the servers of this prefix only: the builders (and any other server
    # kind a step boots) are all named <prefix>-<kind>-...
    poll_cloud = open_cloud(spec.site.cloud)
    server_filter = name_prefix_filter(f"{image.prefix}-")
    try:
        # Authenticate the poller's own connection now, while the cloud answers: a Keystone
        # outage later in the run then cannot blind the waits and the cleanups of its servers.
        poll_cloud.server_states(server_filter)
    except Exception as error:
        logger.warning("the build cloud did not answer a first server list: %s", error)
    # A connection of its own for the image lists: a slow server list then delays no notice
    # of a snapshot.
    poller = Poller(
        poll_cloud,
        server_filter,
        image_cloud=open_cloud(spec.site.cloud),
        sleep=sleep,
        clock=clock,
    )
    context = RunContext(poller, cancellation, sleep, clock)

    def one(
        base: platforms.Base, arch: platforms.Arch
    ) -> tuple[Target, Outcome[Artefacts], float]:
        # One connection per build and cloud: openstacksdk connections are not shared
        # between threads.
        names = dict.fromkeys((spec.site.cloud, *spec.upload.clouds))
        clouds = {name: open_cloud(name) for name in names}
        target = Target(base, arch, marker.new_nonce(), image.prefix)
        begin = clock()
        outcome = run_pipeline(
            build_steps(spec, secrets, render, context, target, clouds),
            Artefacts(),
            target.label,
            clock=clock,
            cancellation=cancellation,
        )
        total = clock() - begin
        built = outcome.ok and not outcome.state.failures
        logger.info("%s: %s in %.1f s", target.label, "built" if built else "failed", total)
        return target, outcome, total

    with futures.ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(combos))) as pool:
        running = [pool.submit(one, base, arch) for base, arch in combos]
        outcomes = [f.result() for f in running]
    logger.info("%d list calls polled every server and image of this run", poller.calls)
    return report_of(spec, outcomes, poller.calls)
