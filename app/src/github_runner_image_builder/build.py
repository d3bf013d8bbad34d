"""The `build` command: one pipeline per (base, arch), all in parallel, merged into a report."""

import logging
import time
from collections.abc import Callable
from concurrent import futures

from github_runner_image_builder import marker, platforms
from github_runner_image_builder.cloud import Cloud
from github_runner_image_builder.pipeline import Outcome, run_pipeline
from github_runner_image_builder.report import Failure, Report
from github_runner_image_builder.steps import BuildOptions, BuildState, Renderer, build_steps

logger = logging.getLogger(__name__)

MAX_PARALLEL = 8


def report_of(options: BuildOptions, outcomes: list[Outcome[BuildState]]) -> Report:
    """Merge the outcomes of every build into the report printed on stdout."""
    report = Report()
    for outcome in outcomes:
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
        for message in outcome.cleanup_errors:
            step, _, error = message.partition(": ")
            report.failures.append(
                Failure(state.base.codename, state.arch.github, options.cloud, step, error)
            )
    return report


def run_builds(
    options: BuildOptions,
    render: Renderer,
    open_cloud: Callable[[str], Cloud] = Cloud,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Report:
    """Build every (base, arch) of `options` in parallel and return the merged report."""
    combos = [(base, arch) for base in options.bases for arch in options.arches]

    def one(base: platforms.Base, arch: platforms.Arch) -> Outcome[BuildState]:
        # One connection per build and cloud: openstacksdk connections are not shared
        # between threads.
        names = dict.fromkeys((options.cloud, *options.upload_clouds))
        state = BuildState(base, arch, marker.new_nonce(), {n: open_cloud(n) for n in names})
        begin = clock()
        outcome = run_pipeline(build_steps(options, render, sleep, clock), state, state.label)
        logger.info(
            "%s: %s in %.1f s",
            state.label,
            "built" if outcome.ok and not state.failures else "failed",
            clock() - begin,
        )
        return outcome

    with futures.ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(combos))) as pool:
        running = [pool.submit(one, base, arch) for base, arch in combos]
        outcomes = [f.result() for f in running]
    return report_of(options, outcomes)
