"""The launch from a real hook process, in a new session and as a transient systemd service."""

import dataclasses
import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest

import job_launcher
import unit_paths
from charm_helpers import UNIT, Machine, build_running, request_spec, script
from job import BuildJob, BuildRequest, BuildResult, RunRecord

SRC = Path(__file__).parents[2] / "src"

# A stand-in for a Juju hook: a process whose stdout/stderr are pipes the caller reads to EOF,
# as Juju does; it starts a build and exits.
HOOK = """
import json, sys
from pathlib import Path
sys.path.insert(0, {src!r})
import job
import job_launcher
import unit_paths
from image_builder_contract.spec import BuildSpec
fields = json.loads({paths!r})
paths = unit_paths.Paths(**{{k: Path(v) if v else None for k, v in fields.items()}})
b = job_launcher.JobLauncher(paths, {unit!r}, {{}})
request = job.BuildRequest(
    spec=BuildSpec.model_validate(
        {{"image": {{"prefix": "p"}}, "site": {{"cloud": "builder"}},
          "upload": {{"clouds": ["builder", "c_u_1"]}}}}
    ),
    script_secrets={{"API_TOKEN": "hook-secret-77"}},
    fingerprint="f",
)
print(json.dumps(b.start(request).__dict__))
"""

# systemd-run as far as the launch needs it: records its arguments, then starts the command
# after `--` detached, with only the --setenv environment and the output properties, as
# systemd does for a transient service (no descriptors, no environment of the caller).
FAKE_SYSTEMD_RUN = """#!{python}
import json, subprocess, sys
from pathlib import Path
argv = sys.argv[1:]
with (Path({home!r}) / "systemd-run-calls.jsonl").open("a") as calls:
    calls.write(json.dumps(argv) + "\\n")
split = argv.index("--")
options, command = argv[:split], argv[split + 1:]
job = Path(command[-1])
(Path({home!r}) / "systemd-job.json").write_bytes(job.read_bytes())  # the runner deletes it
env = dict(o[len("--setenv="):].split("=", 1) for o in options if o.startswith("--setenv="))
props = dict(o[len("--property="):].split("=", 1) for o in options if o.startswith("--property="))
cwd = next(o.split("=", 1)[1] for o in options if o.startswith("--working-directory="))
log = open(props["StandardOutput"].removeprefix("append:"), "ab")
subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                 stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
"""


def _run_hook(paths: unit_paths.Paths) -> dict[str, object]:
    fields = {k: str(v) if v else "" for k, v in dataclasses.asdict(paths).items()}
    hook = HOOK.format(src=str(SRC), paths=json.dumps(fields), unit=UNIT)
    # The deadline only guards against a hang: a runner holding the pipes would block here.
    done = subprocess.run(
        [sys.executable, "-c", hook], capture_output=True, text=True, timeout=60, check=True
    )
    outcome: dict[str, object] = json.loads(done.stdout)
    return outcome


def _check_build_runs_on_after_the_hook(machine: Machine, paths: unit_paths.Paths) -> str:
    outcome = _run_hook(paths)
    assert outcome["started"] is True
    machine.wait_for_build_waiting()
    assert build_running(paths)  # the hook is gone; the build holds the lock
    again = job_launcher.JobLauncher(paths, UNIT, {})
    assert again.builds_now().running
    machine.release()
    machine.wait_for_callbacks(1)
    assert not build_running(paths)
    result = BuildResult.model_validate_json(paths.result.read_text())
    assert result.run_id == outcome["run_id"]
    # The build cloud keeps its copy too: the source of later `copy` jobs.
    assert [i.cloud for i in result.images] == ["builder", "c_u_1"]
    # The secret reached the CLI through its environment only; the job file that held it is
    # gone once the runner read it.
    (call,) = machine.build_calls()
    assert call["secrets"] == {"IMAGE_BUILDER_SECRET_API_TOKEN": "hook-secret-77"}
    assert not paths.job.exists()
    assert "hook-secret-77" not in paths.build_log.read_text()
    # cos-agent ships the build log: root and its group only, whoever created it.
    assert paths.build_log.stat().st_mode & 0o777 == 0o640
    return str(outcome["run_id"])


def test_in_a_new_session_the_hook_returns_while_the_build_runs(machine: Machine) -> None:
    machine.plan(build={"wait": True})
    _check_build_runs_on_after_the_hook(machine, machine.paths)
    assert not (machine.home / "systemd-run-calls.jsonl").exists()


def test_under_systemd_the_build_is_a_transient_service(machine: Machine) -> None:
    fake = script(
        machine.home / "bin" / "systemd-run",
        FAKE_SYSTEMD_RUN.format(python=sys.executable, home=str(machine.home)),
    )
    paths = dataclasses.replace(machine.paths, systemd_run=fake)
    machine.plan(build={"wait": True})
    run_id = _check_build_runs_on_after_the_hook(machine, paths)
    calls = [
        json.loads(line)
        for line in (machine.home / "systemd-run-calls.jsonl").read_text().splitlines()
    ]
    (argv,) = calls
    split = argv.index("--")
    assert argv[split + 1 :] == [sys.executable, str(SRC / "job_runner.py"), str(paths.job)]
    assert f"--unit=github-runner-image-builder-0-build-{run_id[:12]}" in argv
    assert "--collect" in argv
    assert f"--property=StandardOutput=append:{paths.build_log}" in argv
    (pythonpath,) = [a for a in argv if a.startswith("--setenv=")]
    assert pythonpath.startswith(f"--setenv=PYTHONPATH={SRC}")
    assert "hook-secret-77" not in json.dumps(argv)
    job = BuildJob.model_validate_json((machine.home / "systemd-job.json").read_text())
    assert (job.fork, job.lock_fd) == (False, None)  # the service is the runner: no fork


def test_under_systemd_a_service_that_cannot_start_is_an_error(machine: Machine) -> None:
    fake = script(machine.home / "bin" / "systemd-run", "#!/bin/sh\necho 'no bus' >&2\nexit 1\n")
    paths = dataclasses.replace(machine.paths, systemd_run=fake)
    b = job_launcher.JobLauncher(paths, UNIT, {})
    request = BuildRequest(spec=request_spec())
    with pytest.raises(RuntimeError, match=r"systemd-run could not start the build .*no bus"):
        b.start(request)


def test_systemd_is_used_only_where_it_manages_the_machine(tmp_path: Path) -> None:
    assert not unit_paths.systemd_manages_machine(tmp_path / "no-such-dir")


# A CLI that, like the real one, cancels on SIGTERM and takes its time to clean up; it says
# who its parent (the runner) is, and records every call.
PATIENT_CLI = """#!{python}
import json, os, signal, sys, time
from pathlib import Path
home = Path({home!r})
with (home / "cli-calls.jsonl").open("a") as calls:
    calls.write(json.dumps({{"argv": sys.argv[1:], "secrets": {{}}, "env": {{}}}}) + "\\n")
if sys.argv[2] == "clean":
    print("{{}}")
    sys.exit(0)
def cancel(*_):
    (home / "cli-sigterm").touch()
    while not (home / "release").exists():  # cleaning up
        time.sleep(0.02)
    sys.exit(1)
signal.signal(signal.SIGTERM, cancel)
(home / "runner.pid").write_text(str(os.getppid()))
while True:
    time.sleep(0.05)
"""


def test_a_killed_runner_leaves_the_lock_taken_until_its_cli_ends(machine: Machine) -> None:
    import os
    import signal

    from charm_helpers import wait_until

    script(machine.paths.cli, PATIENT_CLI.format(python=sys.executable, home=str(machine.home)))
    started = _run_hook(machine.paths)
    pid_file = machine.home / "runner.pid"
    wait_until(pid_file.exists)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    # The CLI learns its runner died (SIGTERM: it cancels and cleans up) and keeps the lock.
    wait_until((machine.home / "cli-sigterm").exists)
    b = job_launcher.JobLauncher(machine.paths, UNIT, {})
    assert b.is_running()
    request = BuildRequest(spec=request_spec())
    assert b.start(request).started is False  # a trigger now queues behind the live CLI
    assert b.take_result() is None
    machine.release()
    wait_until(lambda: not build_running(machine.paths))
    # The build died without a result: reported, and cleaned up by its id at once.
    result = b.take_result()
    assert result is not None and result.lost and result.run_id == started["run_id"]
    wait_until(lambda: len(_cleanups(machine)) > 0)
    assert _cleanups(machine) == [
        ["--os-cloud=builder", "clean", "--prefix=p", f"--build-id={started['run_id']}"]
    ]
    assert machine.paths.queued.exists()  # the queued build starts with the next handler


def test_under_systemd_a_dead_build_is_cleaned_up_by_a_transient_service(
    machine: Machine,
) -> None:
    from charm_helpers import wait_until

    fake = script(
        machine.home / "bin" / "systemd-run",
        FAKE_SYSTEMD_RUN.format(python=sys.executable, home=str(machine.home)),
    )
    paths = dataclasses.replace(machine.paths, systemd_run=fake)
    b = job_launcher.JobLauncher(paths, UNIT, {})
    paths.state_dir.mkdir(parents=True)
    when = datetime.datetime(2026, 11, 23, 14, 2, tzinfo=datetime.timezone.utc)
    run = RunRecord(run_id="dead" * 8, started_at=when, prefix="p")
    paths.current.write_text(run.model_dump_json())
    result = b.take_result()
    assert result is not None and result.lost
    wait_until(lambda: len(_cleanups(machine)) > 0)
    calls = [
        json.loads(line)
        for line in (machine.home / "systemd-run-calls.jsonl").read_text().splitlines()
    ]
    (argv,) = calls
    assert f"--unit=github-runner-image-builder-0-clean-{'dead' * 3}" in argv
    assert _cleanups(machine) == [
        ["--os-cloud=builder", "clean", "--prefix=p", f"--build-id={'dead' * 8}"]
    ]


def _cleanups(machine: Machine) -> list[list[str]]:
    """Return the CLI's `clean --build-id` calls (not the age-based sweeps before builds)."""
    calls = [c["argv"] for c in machine.cli_calls()]
    return [a for a in calls if a[1] == "clean" and any(w.startswith("--build-id=") for w in a)]
