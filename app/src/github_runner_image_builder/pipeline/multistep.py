"""A step pipeline in the manner of Packer's multistep: each step has a run and a cleanup.

Steps run in order until one raises. Then, whatever happened, the cleanup of every step whose
run was started is called in reverse order, the failed step's included (it may have created
something before failing). A cleanup that raises is logged and the others still run, so one
stuck resource never keeps the rest alive. A cancelled run stops before its next step (or
inside one, when the step raises `Cancelled`), and that step is the one that failed, with the
error "cancelled".
"""

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from github_runner_image_builder.cancel import CANCELLED, NEVER, Cancellation

logger = logging.getLogger(__name__)

S = TypeVar("S")
S_contra = TypeVar("S_contra", contravariant=True)


class Step(Protocol[S_contra]):
    """One unit of work that knows how to undo itself."""

    @property
    def name(self) -> str:
        """The step's word in logs and reports (`names.Step`)."""

    def run(self, state: S_contra) -> None:
        """Do the work; record what was created in `state`; raise to stop the pipeline."""

    def cleanup(self, state: S_contra, failed: bool) -> None:
        """Undo or finish what `run` left; `failed` says whether the pipeline failed."""


@dataclasses.dataclass
class Outcome(Generic[S]):
    """How a pipeline ended: the failed step and its error, or neither on success."""

    state: S
    failed_step: str | None = None
    error: str | None = None
    durations: dict[str, float] = dataclasses.field(default_factory=dict)
    cleanup_seconds: float = 0.0
    cleanup_errors: list[tuple[str, str]] = dataclasses.field(
        default_factory=list
    )  # (step, error): the step's clean-up failed

    @property
    def ok(self) -> bool:
        """Whether every step's run succeeded."""
        return self.failed_step is None


def run_pipeline(
    steps: Sequence[Step[S]],
    state: S,
    label: str,
    clock: Callable[[], float] = time.monotonic,
    cancellation: Cancellation = NEVER,
) -> Outcome[S]:
    """Run `steps` on `state`, then their cleanups in reverse; never raises for a step's error.

    Logs one line per step (with its duration) prefixed with `label`, e.g. `noble-x64`.
    """
    outcome: Outcome[S] = Outcome(state=state)
    started: list[Step[S]] = []
    for step in steps:
        if cancellation.requested:
            outcome.failed_step, outcome.error = step.name, CANCELLED
            logger.error("%s %s: not started: %s", label, step.name, CANCELLED)
            break
        started.append(step)
        begin = clock()
        try:
            step.run(state)
        except Exception as exc:
            outcome.durations[step.name] = clock() - begin
            outcome.failed_step = step.name
            outcome.error = str(exc) or type(exc).__name__
            logger.error(
                "%s %s: failed after %.1f s: %s",
                label,
                step.name,
                outcome.durations[step.name],
                outcome.error,
            )
            break
        outcome.durations[step.name] = clock() - begin
        logger.info("%s %s: done in %.1f s", label, step.name, outcome.durations[step.name])
    begin = clock()
    for step in reversed(started):
        try:
            step.cleanup(state, not outcome.ok)
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            outcome.cleanup_errors.append((step.name, error))
            logger.error("%s %s cleanup: %s", label, step.name, error)
    outcome.cleanup_seconds = clock() - begin
    return outcome
