"""The charm's verification options reach the CLI, and a failed verification is the status."""

import datetime

import pydantic
from ops import testing

import job
from charm import GithubRunnerImageBuilderCharm
from charm_helpers import Machine, base_state, emit, image_relation
from charm_status import summary
from image_builder_contract.report import Failure, ImageResult
from image_builder_contract.spec import VerifySpec

Ctx = testing.Context[GithubRunnerImageBuilderCharm]
WHEN = datetime.datetime(2026, 7, 1, 14, 2, tzinfo=datetime.timezone.utc)


def _verify(ctx: Ctx, machine: Machine, **config: str | int | bool) -> tuple[VerifySpec, str]:
    """Return the `verify` part of the spec the CLI read, and the status after the build."""
    state = ctx.run(ctx.on.action("run"), base_state(image_relation(), **config))
    machine.wait_for_callbacks(1)
    out = emit(ctx, state, "build_finished")
    return machine.build_specs()[0].verify, out.unit_status.message


def test_verification_is_on_by_default_with_the_operators_smoke_test(
    ctx: Ctx, machine: Machine
) -> None:
    verify, status = _verify(ctx, machine, **{"verify-script-url": "https://ops.example/smoke.sh"})
    assert verify.script_url == "https://ops.example/smoke.sh"
    assert verify.enabled
    assert "unverified" not in status


def test_turning_verification_off_says_images_are_unverified(ctx: Ctx, machine: Machine) -> None:
    verify, status = _verify(ctx, machine, **{"verify-images": False})
    assert not verify.enabled
    assert verify.script_url is None
    assert status.endswith(" (images unverified: verify-images is off)")


def _result(*failures: Failure, images: int = 0) -> job.BuildResult:
    built = [
        ImageResult(name="p-noble-x64", base="noble", arch="x64", cloud="c", id=f"i{n}")
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
    failure = Failure(
        base="noble", arch="x64", cloud="builder", step="verify", error="docker: daemon not active"
    )
    assert summary(_result(failure)) == (
        "Last build 14:02 UTC: noble/x64 failed verify: docker: daemon not active"
    )
    other = Failure(base="jammy", arch="x64", step="wait", error="apt")
    assert summary(_result(failure, other, images=1)) == (
        "Last build 14:02 UTC: noble/x64 failed verify: docker: daemon not active "
        "(1 built, 1 more failed)"
    )


def test_the_runners_record_accepts_the_checks_of_a_failed_verification() -> None:
    # The CLI's JSON carries each check; the runner's record reads it without choking.
    failure = pydantic.TypeAdapter(Failure).validate_python(
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
