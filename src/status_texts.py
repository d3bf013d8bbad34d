"""What the unit says about builds: its status texts and the log lines of a finished build.

Pure functions of the charm's records (no machine, no cloud), so every wording is tested
without a charm; the charm's collect-status handler picks which one applies.
"""

import logging
from collections.abc import Sequence

import build_job
import state
from image_builder_contract import text

logger = logging.getLogger(__name__)


def log_result(result: build_job.BuildResult) -> None:
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
            text.one_line(failure.step, 100),
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


def unverified(config: state.BuildConfig) -> str:
    """Return the status suffix that says images go out unverified, when they do."""
    return "" if config.verify_images else " (images unverified: verify-images is off)"


def summary(result: build_job.BuildResult) -> str:
    """Return the one-line status of a finished build."""
    when = result.finished_at.strftime("%H:%M")
    images = len([i for i in result.images if i.cloud != build_job.BUILD_CLOUD])
    plural = "" if images == 1 else "s"
    if result.kind == "lookup":
        return f"Found {images} existing image{plural} {when} UTC; no build needed"
    if result.kind == "copy":
        line = f"Copied {images} image{plural} from the build cloud {when} UTC; no build needed"
        if result.failures:
            first = result.failures[0]
            line += (
                f" ({len(result.failures)} failed: {first.base}/{first.arch} in {first.cloud} "
                f"at {first.step}: {text.one_line(first.error, 80)})"
            )
        return line
    if result.error:
        return f"Last build {when} UTC failed: {text.one_line(result.error, text.STATUS_LIMIT)}"
    failed_verify = [f for f in result.failures if f.step == "verify"]
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
        line += f" ({first.base}/{first.arch}{where} at {first.step or 'unknown step'}"
        line += f": {text.one_line(first.error, 80)})" if first.error else ")"
    return line
