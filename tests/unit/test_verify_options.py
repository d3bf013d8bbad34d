"""The charm's verification options reach the CLI, and a failed verification is the status."""

import datetime

from ops import testing

import job
from charm import GithubRunnerImageBuilderCharm
from charm_helpers import Machine, base_state, emit, image_relation
from charm_status import summary

Ctx = testing.Context[GithubRunnerImageBuilderCharm]
WHEN = datetime.datetime(2026, 7, 1, 14, 2, tzinfo=datetime.timezone.utc)


def _argv(ctx: Ctx, machine: Machine, **config: str | int | bool) -> tuple[list[str], str]:
    state = ctx.run(ctx.on.action("run"), base_state(image_relation(), **config))
    machine.wait_for_callbacks(1)
    out = emit(ctx, state, "build_finished")
    argv: list[str] = machine.build_calls()[0]["argv"]
    return argv, out.unit_status.message


def test_verification_is_on_by_default_with_the_operators_smoke_test(
    ctx: Ctx, machine: Machine
) -> None:
    argv, status = _argv(ctx, machine, **{"verify-script-url": "https://ops.example/smoke.sh"})
    assert "--verify-script-url=https://ops.example/smoke.sh" in argv
    assert "--no-verify" not in argv
    assert "unverified" not in status


def test_turning_verification_off_says_images_are_unverified(ctx: Ctx, machine: Machine) -> None:
    argv, status = _argv(ctx, machine, **{"verify-images": False})
    assert argv[-1] == "--no-verify"
    assert not [arg for arg in argv if arg.startswith("--verify-script-url")]
    assert status.endswith(" (images unverified: verify-images is off)")


def _result(*failures: job.BuildFailure, images: int = 0) -> job.BuildResult:
    built = [
        job.BuiltImage(name="p-noble-x64", base="noble", arch="x64", cloud="c", id=f"i{n}")
        for n in range(images)
    ]
    return job.BuildResult(
        run_id="r",
        started_at=WHEN,
        finished_at=WHEN,
        exit_code=1,
        images=built,
        failures=list(failures),
    )


def test_a_failed_verification_is_the_status_naming_image_and_check() -> None:
    failure = job.BuildFailure(
        base="noble", arch="x64", cloud="builder", step="verify", error="docker: daemon not active"
    )
    assert summary(_result(failure)) == (
        "Last build 14:02 UTC: noble/x64 failed verify: docker: daemon not active"
    )
    other = job.BuildFailure(base="jammy", arch="x64", step="wait", error="apt")
    assert summary(_result(failure, other, images=1)) == (
        "Last build 14:02 UTC: noble/x64 failed verify: docker: daemon not active "
        "(1 built, 1 more failed)"
    )


def test_the_runners_record_accepts_the_checks_of_a_failed_verification() -> None:
    # The CLI's JSON carries each check; the runner's record reads it without choking.
    failure = job.BuildFailure.model_validate(
        {
            "base": "noble",
            "arch": "x64",
            "cloud": "builder",
            "step": "verify",
            "error": "docker: daemon not active",
            "checks": [{"name": "docker", "ok": False, "detail": "daemon not active"}],
        }
    )
    assert failure.error == "docker: daemon not active"
