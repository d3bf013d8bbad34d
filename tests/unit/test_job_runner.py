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

import durable_files
import job_launcher
import job_runner
from charm_helpers import request_spec
from github_runner_image_builder.cli import build as cli_build
from github_runner_image_builder.cli import build_parser
from image_builder_contract import report
from job import (
    BUILD_TIMEOUT,
    BuildJob,
    BuildRequest,
    BuildResult,
    CleanJob,
    build_argv,
    cli_environment,
    sweep_argv,
)

STARTED = datetime.datetime(2026, 11, 23, 14, 2, tzinfo=datetime.timezone.utc)
SECRET = "job-secret-5a0e"  # noqa: S105 - test value


def _job(tmp_path: Path, cli: str = "cli", **parts: dict[str, object]) -> BuildJob:
    """Return a job of prefix "app" for two requirer clouds; `parts`: fields of its spec."""
    image = {"bases": ["jammy", "noble"], **parts.pop("image", {})}
    spec = request_spec("app", ("a_u_1", "b_u_2"), 5, image=image, **parts)
    return BuildJob(
        run_id="r1",
        started_at=STARTED,
        unit="app/0",
        cli=cli,
        juju_exec="/usr/bin/juju-exec",
        result=str(tmp_path / "result.json"),
        lock=str(tmp_path / "build.lock"),
        kill_after=60,
        env={"PATH": os.environ["PATH"]},
        request=BuildRequest(
            spec=spec,
            script_secrets={"API_TOKEN": pydantic.SecretStr(SECRET)},
        ),
    )


def test_job_file_round_trips_with_its_secrets_and_hides_them_in_reprs(tmp_path: Path) -> None:
    job = _job(tmp_path)
    text = job.model_dump_json()
    again = BuildJob.model_validate_json(text)
    assert again == job
    assert again.request.script_secrets["API_TOKEN"].get_secret_value() == SECRET
    assert SECRET in text  # the runner can only read them from the 0600 file
    assert SECRET not in repr(job) and SECRET not in str(job.model_dump())


def test_the_cli_reads_the_jobs_spec_from_a_file_and_no_secret_travels_in_it(
    tmp_path: Path,
) -> None:
    job = _job(
        tmp_path,
        site={"flavor": "--help", "network": "-x", "build_id": "r1"},
        prune={"protect": ["i2", "i1", "i2"]},
    )
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(job.request.spec.model_dump_json())
    argv = build_argv(job, str(spec_file))
    assert argv == ["cli", "--os-cloud=builder", "build", f"--spec={spec_file}"]
    # The real CLI's reading of that command line: the charm's spec, whole.
    spec = cli_build.spec_of(build_parser().parse_args(argv[1:]))
    assert spec == job.request.spec
    assert [b.codename for b in spec.image.bases] == ["jammy", "noble"]
    assert spec.upload.clouds == ("builder", "a_u_1", "b_u_2")
    assert (spec.site.flavor, spec.site.network, spec.site.build_id) == ("--help", "-x", "r1")
    assert spec.site.timeout == BUILD_TIMEOUT and spec.prune.protect == {"i1", "i2"}
    assert SECRET not in " ".join(argv) and SECRET not in spec_file.read_text()


def test_sweeps_stay_home_in_upload_clouds(tmp_path: Path) -> None:
    # The build cloud is swept whole; an upload cloud (a requirer's project, where no builder
    # runs) only for unfinished images our CLI uploaded: `--upload-cloud`.
    clean = ["clean", "--prefix=app", "--older-than=10800"]
    assert sweep_argv(_job(tmp_path)) == [
        ["cli", "--os-cloud=builder", *clean],
        ["cli", "--os-cloud=a_u_1", *clean, "--upload-cloud"],
        ["cli", "--os-cloud=b_u_2", *clean, "--upload-cloud"],
    ]


def test_cli_environment_adds_the_secrets_under_their_prefix(tmp_path: Path) -> None:
    env = cli_environment(_job(tmp_path))
    assert env["IMAGE_BUILDER_SECRET_API_TOKEN"] == SECRET
    assert env["PATH"] == os.environ["PATH"]


def test_result_lists_images_and_failures_of_a_partial_build(tmp_path: Path) -> None:
    answer = {
        "images": [{"name": "n", "base": "noble", "arch": "x64", "cloud": "c", "id": "i"}],
        "failures": [{"base": "jammy", "arch": "x64", "cloud": "c", "step": "boot", "error": "e"}],
    }
    result = job_runner.make_result(_job(tmp_path), 1, json.dumps(answer), "")
    assert [(i.name, i.cloud, i.id) for i in result.images] == [("n", "c", "i")]
    assert [(f.base, f.step, f.error) for f in result.failures] == [("jammy", "boot", "e")]
    assert (result.error, result.exit_code, result.run_id) == ("", 1, "r1")


def test_result_keeps_the_step_times_the_cli_reports(tmp_path: Path) -> None:
    # The CLI's own report, so a renamed key on either side fails here.
    cli_report = report.Report(
        timings=[report.Timing("noble", "x64", {"wait": 61.0, "verify": 88.25}, 3.0, 160.0)]
    )
    result = job_runner.make_result(_job(tmp_path), 0, cli_report.to_json(), "")
    assert [(t.base, t.arch, t.steps) for t in result.timings] == [
        ("noble", "x64", {"wait": 61.0, "verify": 88.25})
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
    assert job_runner.make_result(_job(tmp_path), code, stdout, "").error == error


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
    code, stdout, error = job_runner.run_cli(job, [cli], grace=20)
    assert code == -1
    assert error == "the CLI ran longer than 1 s and was stopped"
    result = job_runner.make_result(job, code, stdout, error)
    assert [f.error for f in result.failures] == ["cancelled"]
    assert result.error == error


def test_cli_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    stubborn = _script(
        tmp_path / "stubborn", "signal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(30)\n"
    )
    began = time.monotonic()
    job = _job(tmp_path).model_copy(update={"kill_after": 1.0})
    code, stdout, error = job_runner.run_cli(job, [stubborn], grace=1.0)
    assert (code, stdout) == (-1, "")
    assert error == (
        "the CLI ran longer than 1 s and was killed when it had not stopped 1 s after SIGTERM"
    )
    assert time.monotonic() - began < 10


def test_result_file_is_private_and_is_the_model_the_charm_reads(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    result = job_runner.make_result(_job(tmp_path), 0, '{"images": []}', "")
    job_runner.write_result(path, result)
    assert BuildResult.model_validate_json(path.read_text()) == result
    assert path.stat().st_mode & 0o777 == 0o600


def test_wrong_usage_exits_2(tmp_path: Path) -> None:
    assert job_runner.main([]) == 2


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
    runner = Path(job_runner.__file__)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": job_launcher.runner_pythonpath()}
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
    result = BuildResult.model_validate_json(Path(job.result).read_text())
    assert (result.run_id, result.exit_code, result.error) == ("r1", 0, "")


def test_a_quoted_newline_cannot_forge_a_build_log_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    job_runner.log(
        "clean-up failed: boom\n2026-12-01T00:00:00Z build_runner: build r0 finished: exit 0"
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].count("build_runner:") == 2


def test_build_log_lines_never_show_url_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    # The charm refuses credentials in URLs; should one reach a command line anyway (a CLI
    # error quoting a URL, a future option), the build log still shows none.
    job_runner.log("build r1 starting: --script-url=https://u:s3cret@scripts.example/s.sh")
    line = capsys.readouterr().out
    assert "--script-url=https://***@scripts.example/s.sh" in line and "s3cret" not in line


# --- crashes and full disks (issue 11) ------------------------------------------------------

ANSWER = {
    "images": [
        {"name": "app-noble-x64", "base": "noble", "arch": "x64", "cloud": "a_u_1", "id": "i"}
    ],
    "failures": [],
}


def _runnable(tmp_path: Path, body: str) -> BuildJob:
    """Return a job whose CLI is `body` (recording each call) and whose callback is a no-op."""
    calls = tmp_path / "calls.jsonl"
    cli = _script(
        tmp_path / "cli",
        f"with open({str(calls)!r}, 'a') as f:\n    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "if sys.argv[2] == 'clean':\n    print('{}')\n    sys.exit(0)\n" + body,
    )
    state = tmp_path / "state"
    state.mkdir()
    return _job(tmp_path, cli=cli).model_copy(
        update={
            "result": str(state / "result.json"),
            "lock": str(state / "build.lock"),
            "juju_exec": "/bin/true",
        }
    )


def _calls(tmp_path: Path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def test_a_disk_that_fills_during_the_build_keeps_the_result_and_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from full_disk import FullDisk, stray_files

    flag = tmp_path / "disk-full"
    # The CLI's build fills the disk, then answers.
    job = _runnable(tmp_path, f"open({str(flag)!r}, 'w').close()\nprint(json.dumps({ANSWER!r}))\n")
    disk = FullDisk(tmp_path / "state", flag, monkeypatch)
    assert job_runner.run(job) == 0
    assert disk.full and disk.refused == []  # every byte went into the reserved space
    result = BuildResult.model_validate_json(Path(job.result).read_text())
    assert [i.id for i in result.images] == ["i"] and result.error == ""
    assert stray_files(tmp_path / "state", {"result.json", "build.lock"}) == []


def test_a_result_too_large_for_the_reserve_keeps_its_images_and_says_disk_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from full_disk import FullDisk, stray_files

    flag = tmp_path / "disk-full"
    failures = [{"base": "jammy", "arch": "x64", "cloud": "b_u_2", "error": "e" * 500}] * 20
    answer = {**ANSWER, "failures": failures}
    job = _runnable(tmp_path, f"open({str(flag)!r}, 'w').close()\nprint(json.dumps({answer!r}))\n")
    monkeypatch.setattr(job_runner, "RESULT_RESERVE", 4096)
    disk = FullDisk(tmp_path / "state", flag, monkeypatch)
    job_runner.run(job)
    assert disk.refused  # the whole result did not fit
    result = BuildResult.model_validate_json(Path(job.result).read_text())
    assert [i.id for i in result.images] == ["i"]  # what was built is still published
    assert result.error.startswith("disk full: the report of 20 failures did not fit in ")
    assert stray_files(tmp_path / "state", {"result.json", "build.lock"}) == []


def test_no_room_for_the_result_at_the_start_builds_nothing_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from full_disk import FullDisk, stray_files

    flag = tmp_path / "disk-full"
    job = _runnable(tmp_path, f"print(json.dumps({ANSWER!r}))\n")
    disk = FullDisk(tmp_path / "state", flag, monkeypatch)
    disk.fill()

    def no_space(*_: object) -> None:
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    job_runner.run(job)
    assert not (tmp_path / "calls.jsonl").exists()  # no build whose result could not be kept
    assert stray_files(tmp_path / "state", {"build.lock"}) == []


def test_result_and_other_state_writes_are_fsynced_file_then_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stat

    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "result.json"
    job_runner.write_result(path, job_runner.make_result(_job(tmp_path), 0, "{}", ""))
    assert synced == ["file", "folder"]
    synced.clear()
    durable_files.write(tmp_path / "clouds.yaml", "clouds: {}\n")
    assert synced == ["file", "folder"]


def test_a_cli_that_crashed_gets_its_build_cleaned_up_by_id(tmp_path: Path) -> None:
    job = _runnable(tmp_path, "print('Traceback: boom')\nsys.exit(3)\n")
    job = job.model_copy(update={"request": job.request.tagged("r1")})
    job_runner.run(job)
    assert [c[1:] for c in _calls(tmp_path) if c[1] == "clean" and "--build-id=r1" in c] == [
        ["clean", "--prefix=app", "--build-id=r1"]
    ]


def test_the_runner_deletes_the_job_file_once_read(tmp_path: Path) -> None:
    job = _runnable(tmp_path, f"print(json.dumps({ANSWER!r}))\n").model_copy(
        update={"fork": False}
    )
    job_file = tmp_path / "state" / "job.json"
    job_file.write_text(job.model_dump_json())
    assert job_runner.main([str(job_file)]) == 0
    assert not job_file.exists()  # the script secrets do not stay on the disk
    assert Path(job.result).exists()


def test_a_clean_job_runs_clean_by_build_id_in_the_build_cloud(tmp_path: Path) -> None:
    job = _runnable(tmp_path, "")
    clean = CleanJob(build_id="dead1", prefix="app", cli=job.cli, fork=False)
    job_file = tmp_path / "clean.json"
    job_file.write_text(clean.model_dump_json())
    assert job_runner.main([str(job_file)]) == 0
    assert _calls(tmp_path) == [
        ["--os-cloud=builder", "clean", "--prefix=app", "--build-id=dead1"]
    ]
    assert not job_file.exists()
