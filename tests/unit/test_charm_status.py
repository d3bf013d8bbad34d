"""The unit status as one pure function: every branch, its words and which problem wins."""

import datetime

import ops
import pytest

from charm_status import (
    NO_BUILDS,
    NO_CREDENTIALS,
    STANDBY,
    StatusFacts,
    compute_status,
    run_results,
)
from image_builder_contract.report import Failure, ImageResult
from job import BuildResult, RunRecord
from job_launcher import StartOutcome
from job_records import BuildsNow

STARTED = datetime.datetime(2026, 11, 23, 14, 2, tzinfo=datetime.timezone.utc)
FINISHED = datetime.datetime(2026, 11, 23, 14, 47, tzinfo=datetime.timezone.utc)
ASIDE = "images.json.corrupt-20261123T140200000000Z"
NOTE = f"; unreadable state file set aside: {ASIDE} (recovered)"


def _ready(**facts: object) -> StatusFacts:
    """Return the facts of a leader with one requirer cloud and no build yet, overridden."""
    defaults: dict[str, object] = {"integrated": True, "clouds": 1, "leader": True}
    return StatusFacts(**{**defaults, **facts})  # type: ignore[arg-type]


def _running(queued: bool = False) -> BuildsNow:
    current = RunRecord(run_id="r1", started_at=STARTED, clouds=["c_u_1"])
    return BuildsNow(running=True, queued=queued, current=current, last_result=None)


def _finished(**result: object) -> BuildsNow:
    last = BuildResult(
        run_id="r1",
        started_at=STARTED,
        finished_at=FINISHED,
        exit_code=0,
        **result,  # type: ignore[arg-type]
    )
    return BuildsNow(running=False, queued=False, current=None, last_result=last)


def _image(cloud: str) -> ImageResult:
    return ImageResult(name="app-noble-x64", base="noble", arch="x64", cloud=cloud, id="img-1")


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (
            StatusFacts(config_problem="build-interval: 0 is out of range", write_problem="x"),
            ops.BlockedStatus("build-interval: 0 is out of range"),
        ),
        (
            StatusFacts(write_problem="cannot write images.json in /s: No space left on device"),
            ops.BlockedStatus("cannot write images.json in /s: No space left on device"),
        ),
        (StatusFacts(clouds=2), ops.BlockedStatus("image integration required")),
        (
            StatusFacts(integrated=True),
            ops.WaitingStatus("waiting for OpenStack credentials from a requirer"),
        ),
    ],
    ids=["config first", "a file not written", "no relation", "no credentials"],
)
def test_a_unit_that_cannot_build_says_why_and_ignores_its_builds(
    facts: StatusFacts, expected: ops.StatusBase
) -> None:
    assert not facts.ready
    assert compute_status(facts) == expected


def test_a_running_build_says_since_when_and_a_queued_rebuild() -> None:
    status = compute_status(_ready(builds=_running(queued=True)))
    assert status == ops.MaintenanceStatus("Building images since 14:02 UTC, rebuild queued")


def test_a_standby_units_build_goes_to_the_leader_and_queues_nothing() -> None:
    status = compute_status(_ready(leader=False, builds=_running(queued=True), set_aside=(ASIDE,)))
    expected = "Building images since 14:02 UTC; its images go to the leader" + NOTE
    assert status == ops.MaintenanceStatus(expected)


def test_a_standby_unit_names_its_leader_and_what_it_serves() -> None:
    facts = _ready(leader=False, leader_name="app/1", clouds=2, served=1)
    status = compute_status(facts)
    expected = "Standby: serving the images of the leader app/1 (1 of 2 clouds)"
    assert status == ops.ActiveStatus(expected)
    unknown = compute_status(_ready(leader=False, served=1))
    expected = "Standby: serving the images of the leader (not known yet) (1 of 1 clouds)"
    assert unknown == ops.ActiveStatus(expected)


def test_the_leader_sums_up_its_last_build() -> None:
    builds = _finished(images=[_image("builder"), _image("c_u_1")])
    status = compute_status(_ready(builds=builds, set_aside=(ASIDE, "handled.corrupt-1")))
    more = f"; unreadable state file set aside: {ASIDE} and 1 more (recovered)"
    assert status == ops.ActiveStatus("Last build 14:47 UTC: 1 image, 0 failed" + more)


def test_a_failed_verification_is_named_and_unverified_images_are_said() -> None:
    failure = Failure(base="noble", arch="x64", step="verify", error="no runner binary")
    status = compute_status(_ready(builds=_finished(failures=[failure]), verify_images=False))
    expected = (
        "Last build 14:47 UTC: noble/x64 failed verify: no runner binary"
        " (images unverified: verify-images is off)"
    )
    assert status == ops.ActiveStatus(expected)


def test_before_any_build_the_leader_says_how_many_clouds_are_served() -> None:
    status = compute_status(_ready(clouds=3, served=2, verify_images=False))
    expected = (
        "No build has run on this unit yet; 2 of 3 clouds served"
        " (images unverified: verify-images is off)"
    )
    assert status == ops.ActiveStatus(expected)


def test_a_lock_held_without_a_record_is_no_running_build() -> None:
    """current.json unreadable while the lock is held: the last result speaks, as before."""
    builds = BuildsNow(running=True, queued=False, current=None, last_result=None)
    assert compute_status(_ready(builds=builds)) == compute_status(_ready(builds=NO_BUILDS))


def test_the_run_action_answers_started_or_queued() -> None:
    assert run_results(StartOutcome(started=True, run_id="r2")) == {
        "result": "started",
        "build-id": "r2",
    }
    assert run_results(StartOutcome(started=False, run_id="r1")) == {
        "result": "queued",
        "build-id": "r1",
        "detail": "a build is running; one rebuild will start when it ends",
    }


def test_the_refusals_name_the_leader_and_the_integrate_command() -> None:
    assert STANDBY.format(leader="app/1").endswith("run the action there: juju run app/1 run")
    assert NO_CREDENTIALS.format(app="app").endswith(
        "juju integrate app:image github-runner:image"
    )
