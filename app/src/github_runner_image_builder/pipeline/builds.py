"""The `build` command: one pipeline per (base, arch), all in parallel, merged into a report."""

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
    BuildOptions,
    BuildState,
    Renderer,
    RunContext,
    build_steps,
)
from github_runner_image_builder.report import Failure, Report, Timing
from image_builder_contract import platforms

logger = logging.getLogger(__name__)

MAX_PARALLEL = 8


def report_of(
    options: BuildOptions, outcomes: list[tuple[Outcome[BuildState], float]], poll_calls: int
) -> Report:
    """Merge the outcomes of every build (with its wall time) into the report on stdout."""
    report = Report(poll_calls=poll_calls)
    for outcome, total in outcomes:
        state = outcome.state
        report.images.extend(state.images)
        report.failures.extend(state.failures)
        # A copy step that failed in every cloud has already said so, cloud by cloud.
        already_said = outcome.failed_step == "copy" and state.failures
        if not outcome.ok and not already_said:
            report.failures.append(
                Failure(
                    state.base.codename,
                    state.arch.github,
                    options.cloud,
                    outcome.failed_step or "",
                    outcome.error or "",
                    checks=state.checks if outcome.failed_step == "verify" else (),
                )
            )
        for step, error in outcome.cleanup_errors:
            report.failures.append(
                Failure(state.base.codename, state.arch.github, options.cloud, step, error)
            )
        report.timings.append(
            Timing(
                state.base.codename,
                state.arch.github,
                dict(outcome.durations),
                outcome.cleanup_seconds,
                total,
            )
        )
    return report


def run_builds(
    options: BuildOptions,
    render: Renderer,
    open_cloud: Callable[[str], Cloud] = Cloud,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    *,
    cancellation: Cancellation = NEVER,
) -> Report:
    """Build every (base, arch) of `options` in parallel and return the merged report."""
    combos = [(base, arch) for base in options.bases for arch in options.arches]
    # The poller lists the servers of this prefix only: the builders (and any other server
    # kind a step boots) are all named <prefix>-<kind>-...
    poll_cloud = open_cloud(options.cloud)
    server_filter = name_prefix_filter(f"{options.prefix}-")
    try:
        # Authenticate the poller's own connection now, while the cloud answers: a Keystone
        # outage later in the run then cannot blind the waits and the cleanups of its servers.
        poll_cloud.server_states(server_filter)
    except Exception as error:
        logger.warning("the build cloud did not answer a first server list: %s", error)
    # A connection of its own for the image lists: a slow server list then delays no notice
    # of a snapshot.
    poller = Poller(
        poll_cloud, server_filter, image_cloud=open_cloud(options.cloud), sleep=sleep, clock=clock
    )
    context = RunContext(poller, cancellation, sleep, clock)

    def one(base: platforms.Base, arch: platforms.Arch) -> tuple[Outcome[BuildState], float]:
        # One connection per build and cloud: openstacksdk connections are not shared
        # between threads.
        names = dict.fromkeys((options.cloud, *options.upload_clouds))
        state = BuildState(base, arch, marker.new_nonce(), {n: open_cloud(n) for n in names})
        begin = clock()
        outcome = run_pipeline(
            build_steps(options, render, context),
            state,
            state.label,
            clock=clock,
            cancellation=cancellation,
        )
        total = clock() - begin
        logger.info(
            "%s: %s in %.1f s",
            state.label,
            "built" if outcome.ok and not state.failures else "failed",
            total,
        )
        return outcome, total

    with futures.ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(combos))) as pool:
        running = [pool.submit(one, base, arch) for base, arch in combos]
        outcomes = [f.result() for f in running]
    logger.info("%d list calls polled every server and image of this run", poller.calls)
    return report_of(options, outcomes, poller.calls)
