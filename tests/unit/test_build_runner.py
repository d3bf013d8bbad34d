"""The detached build runner's own decisions, and the job file it shares with the charm."""

import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pydantic
import pytest

import build_job
import build_runner
import builder
from github_runner_image_builder import report

STARTED = datetime.datetime(2026, 11, 23, 14, 2, tzinfo=datetime.timezone.utc)
SECRET = "job-secret-5a0e"  # noqa: S105 - test value


def _job(tmp_path: Path, cli: str = "cli", **options: object) -> build_job.BuildJob:
    opts = {
        "bases": ("jammy", "noble"),
        "arch": "x64",
        "prefix": "app",
        "upload_clouds": ("a_u_1", "b_u_2"),
        "keep_revisions": 5,
        **options,
    }
    return build_job.BuildJob(
        run_id="r1",
        started_at=STARTED,
        unit="app/0",
        cli=cli,
        juju_exec="/usr/bin/juju-exec",
        result=str(tmp_path / "result.json"),
        lock=str(tmp_path / "build.lock"),
        kill_after=60,
        env={"PATH": os.environ["PATH"]},
        request=build_job.BuildRequest(
            options=build_job.BuildOptions.model_validate(opts),
            script_secrets={"API_TOKEN": pydantic.SecretStr(SECRET)},
        ),
    )


def test_job_file_round_trips_with_its_secrets_and_hides_them_in_reprs(tmp_path: Path) -> None:
    job = _job(tmp_path)
    text = job.model_dump_json()
    again = build_job.BuildJob.model_validate_json(text)
    assert again == job
    assert again.request.script_secrets["API_TOKEN"].get_secret_value() == SECRET
    assert SECRET in text  # the runner can only read them from the 0600 file
    assert SECRET not in repr(job) and SECRET not in str(job.model_dump())


def test_build_command_line_uses_flag_equals_value_and_skips_empty_options(
    tmp_path: Path,
) -> None:
    job = _job(tmp_path, flavor="--help", network="-x", protect=("i2", "i1", "i2"))
    assert build_job.build_argv(job) == [
        "cli",
        "--os-cloud=builder",
        "build",
        "--base=jammy,noble",
        "--arch=x64",
        "--prefix=app",
        "--upload-clouds=builder,a_u_1,b_u_2",
        "--keep-revisions=5",
        f"--timeout={build_job.BUILD_TIMEOUT}",
        "--flavor=--help",
        "--network=-x",
        "--protect=i1,i2",
    ]
    assert SECRET not in " ".join(build_job.build_argv(job))


def test_sweeps_cover_the_build_cloud_and_every_upload_cloud(tmp_path: Path) -> None:
    assert build_job.sweep_argv(_job(tmp_path)) == [
        ["cli", f"--os-cloud={cloud}", "clean", "--prefix=app", "--older-than=10800"]
        for cloud in ("builder", "a_u_1", "b_u_2")
    ]


def test_cli_environment_adds_the_secrets_under_their_prefix(tmp_path: Path) -> None:
    env = build_job.cli_environment(_job(tmp_path))
    assert env["IMAGE_BUILDER_SECRET_API_TOKEN"] == SECRET
    assert env["PATH"] == os.environ["PATH"]


def test_result_lists_images_and_failures_of_a_partial_build(tmp_path: Path) -> None:
    answer = {
        "images": [{"name": "n", "base": "noble", "arch": "x64", "cloud": "c", "id": "i"}],
        "failures": [{"base": "jammy", "arch": "x64", "cloud": "c", "step": "boot", "error": "e"}],
    }
    result = build_runner.make_result(_job(tmp_path), 1, json.dumps(answer), "")
    assert [i.model_dump() for i in result.images] == answer["images"]
    assert [f.model_dump() for f in result.failures] == answer["failures"]
    assert (result.error, result.exit_code, result.run_id) == ("", 1, "r1")


def test_result_keeps_the_step_times_the_cli_reports(tmp_path: Path) -> None:
    # The CLI's own report, so a renamed key on either side fails here.
    cli_report = report.Report(
        timings=[report.Timing("noble", "x64", {"wait": 61.0, "verify": 88.25}, 3.0, 160.0)]
    )
    result = build_runner.make_result(_job(tmp_path), 0, cli_report.to_json(), "")
    assert [t.model_dump() for t in result.timings] == [
        {"base": "noble", "arch": "x64", "steps": {"wait": 61.0, "verify": 88.25}}
    ]


@pytest.mark.parametrize(
    ("code", "stdout", "error"),
    [
        (2, "usage: ...", "the CLI exited 2 without a JSON answer; see the build log"),
        (0, "[1, 2]", "the CLI exited 0 without a JSON answer; see the build log"),
        (1, '{"images": [], "failures": []}', "the CLI exited 1; see the build log"),
    ],
)
def test_result_of_a_cli_without_usable_answer_is_an_error(
    tmp_path: Path, code: int, stdout: str, error: str
) -> None:
    assert build_runner.make_result(_job(tmp_path), code, stdout, "").error == error


def _script(path: Path, body: str) -> str:
    path.write_text(f"#!{sys.executable}\nimport json, signal, sys, time\n{body}")
    path.chmod(0o755)
    return str(path)


def test_cli_overrunning_its_budget_is_stopped_and_its_report_kept(tmp_path: Path) -> None:
    # Like the real CLI: SIGTERM makes it clean up, print its report and exit 1.
    cli = _script(
        tmp_path / "cli",
        "def stop(*_):\n"
        "    failure = {'base': 'noble', 'arch': 'x64', 'error': 'cancelled'}\n"
        "    print(json.dumps({'images': [], 'failures': [failure]}))\n"
        "    sys.exit(1)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "time.sleep(30)\n",
    )
    job = _job(tmp_path).model_copy(update={"kill_after": 1.0})
    code, stdout, error = build_runner.run_cli(job, [cli], grace=20)
    assert code == -1
    assert error == "the CLI ran longer than 1 s and was stopped"
    result = build_runner.make_result(job, code, stdout, error)
    assert [f.error for f in result.failures] == ["cancelled"]
    assert result.error == error


def test_cli_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    stubborn = _script(
        tmp_path / "stubborn", "signal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(30)\n"
    )
    began = time.monotonic()
    job = _job(tmp_path).model_copy(update={"kill_after": 1.0})
    code, stdout, error = build_runner.run_cli(job, [stubborn], grace=1.0)
    assert (code, stdout) == (-1, "")
    assert error == (
        "the CLI ran longer than 1 s and was killed when it had not stopped 1 s after SIGTERM"
    )
    assert time.monotonic() - began < 10


def test_result_file_is_private_and_is_the_model_the_charm_reads(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    result = build_runner.make_result(_job(tmp_path), 0, '{"images": []}', "")
    build_runner.write_result(path, result)
    assert build_job.BuildResult.model_validate_json(path.read_text()) == result
    assert path.stat().st_mode & 0o777 == 0o600


def test_wrong_usage_exits_2(tmp_path: Path) -> None:
    assert build_runner.main([]) == 2


def test_runner_under_the_machines_own_python_finds_the_charms_modules(tmp_path: Path) -> None:
    """In the packed charm the runner runs with /usr/bin/python3, which lacks pydantic: the
    launcher's PYTHONPATH (the charm's src/ and venv) is all it has to import the job model."""
    system = Path("/usr/bin/python3")
    probe = [str(system), "-c", "import pydantic"]
    if not system.exists():
        pytest.skip("needs a machine python")
    if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        pytest.skip("needs a machine python without pydantic")
    version = subprocess.run(
        [str(system), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if version != str(sys.version_info[:2]):
        pytest.skip("the machine python differs from the charm's (compiled wheels)")
    cli = tmp_path / "cli"
    cli.write_text('#!/bin/sh\necho \'{"images": [], "failures": []}\'\n')
    cli.chmod(0o755)
    job = _job(tmp_path, cli=str(cli)).model_copy(update={"fork": False})
    job_file = tmp_path / "job.json"
    job_file.write_text(job.model_dump_json())
    runner = Path(build_runner.__file__)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": builder.runner_pythonpath()}
    done = subprocess.run(
        [str(system), "-I", str(runner), str(job_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    # -I ignores PYTHONPATH: without it the runner cannot start, which shows the test is real.
    assert done.returncode != 0 and "No module named" in done.stderr
    done = subprocess.run(
        [str(system), str(runner), str(job_file)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = build_job.BuildResult.model_validate_json(Path(job.result).read_text())
    assert (result.run_id, result.exit_code, result.error) == ("r1", 0, "")
