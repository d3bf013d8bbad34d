"""Tests of the step pipeline: run order, clean-up order, failures and clean-up errors."""

import dataclasses
import logging

import pytest

from github_runner_image_builder.pipeline.multistep import Outcome, run_pipeline


@dataclasses.dataclass
class Recorder:
    name: str
    log: list[str]
    fail_run: bool = False
    fail_cleanup: bool = False

    def run(self, state: list[str]) -> None:
        self.log.append(f"run {self.name}")
        state.append(self.name)
        if self.fail_run:
            raise RuntimeError(f"{self.name} broke")

    def cleanup(self, state: list[str], failed: bool) -> None:
        self.log.append(f"cleanup {self.name} failed={failed}")
        if self.fail_cleanup:
            raise RuntimeError("cannot undo")


def test_success_runs_all_then_cleans_up_in_reverse() -> None:
    log: list[str] = []
    steps = [Recorder(n, log) for n in "abc"]
    outcome: Outcome[list[str]] = run_pipeline(steps, [], "t")
    assert outcome.ok and outcome.state == ["a", "b", "c"]
    assert log == [
        "run a",
        "run b",
        "run c",
        "cleanup c failed=False",
        "cleanup b failed=False",
        "cleanup a failed=False",
    ]
    assert set(outcome.durations) == {"a", "b", "c"}


@pytest.mark.parametrize("failing", range(4))
def test_failure_at_each_step_cleans_up_started_steps_in_reverse(failing: int) -> None:
    log: list[str] = []
    names = ["base", "group", "server", "snapshot"]
    steps = [Recorder(n, log, fail_run=i == failing) for i, n in enumerate(names)]
    outcome: Outcome[list[str]] = run_pipeline(steps, [], "t")
    assert outcome.failed_step == names[failing]
    assert outcome.error == f"{names[failing]} broke"
    started = names[: failing + 1]
    assert log == [f"run {n}" for n in started] + [
        f"cleanup {n} failed=True" for n in reversed(started)
    ]


def test_cleanup_error_is_recorded_and_the_rest_still_clean_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []
    steps = [Recorder("a", log), Recorder("b", log, fail_cleanup=True), Recorder("c", log)]
    with caplog.at_level(logging.INFO):
        outcome: Outcome[list[str]] = run_pipeline(steps, [], "noble-x64")
    assert outcome.ok
    assert outcome.cleanup_errors == [("b", "cannot undo")]
    assert log[-1] == "cleanup a failed=False"
    assert "noble-x64 a: done in" in caplog.text


def test_durations_come_from_the_clock(caplog: pytest.LogCaptureFixture) -> None:
    ticks = iter([0.0, 1.5, 10.0, 12.25, 20.0, 20.5])
    log: list[str] = []
    with caplog.at_level(logging.INFO):
        outcome: Outcome[list[str]] = run_pipeline(
            [Recorder("a", log), Recorder("b", log)], [], "x", clock=lambda: next(ticks)
        )
    assert outcome.durations == {"a": 1.5, "b": 2.25}
    assert outcome.cleanup_seconds == 0.5
    assert "x b: done in 2.2 s" in caplog.text or "x b: done in 2.3 s" in caplog.text
