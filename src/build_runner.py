#!/usr/bin/env python3
"""Runs one build job outside any hook; started by builder.Builder.start with the job file.

Usage: `build_runner.py JOB_FILE`. The job (build_job.BuildJob, written by the charm) says
everything; the runner imports build_job from the charm's src/ and pydantic from the charm's
venv (the launcher puts both on PYTHONPATH). It takes the build lock (inherited already locked
in a new session; taken itself under systemd), runs the lookups or the sweeps and the build,
writes the result (build_job.BuildResult), releases the lock and finally dispatches the charm's
`build_finished` event with juju-exec. Secrets live in the job file and reach only the CLI's
environment.
"""

import datetime
import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydantic

from build_job import (
    BuildJob,
    BuildResult,
    BuiltImage,
    CliAnswer,
    Lookup,
    build_argv,
    cli_environment,
    copy_argv,
    copy_plan,
    found_image,
    lookup_argv,
    needs_build,
    sweep_argv,
)

# Seconds one `clean` may take: it waits for each leftover server to be gone (300 s at most).
SWEEP_TIMEOUT = 600
# Seconds a runner started by systemd waits for the hook that launched it to let the lock go.
LOCK_WAIT = 60
# Seconds an overrunning CLI gets, after SIGTERM, to clean up every cloud and print its
# report; only then is it SIGKILLed. Its cleanups wait at most 300 s for a server to go.
STOP_GRACE = 600


def log(message: str) -> None:
    """Write one timestamped line to the build log (our stdout)."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"{now} build_runner: {message}", flush=True)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def read_job(path: Path) -> BuildJob:
    """Return the job the charm wrote."""
    return BuildJob.model_validate_json(path.read_text())


def call(job: BuildJob, command: list[str], timeout: float) -> "subprocess.CompletedProcess[str]":
    """Run a CLI command; stderr goes straight to the build log, stdout is returned."""
    return subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env=cli_environment(job),
        text=True,
        timeout=timeout,
        check=False,
    )


def run_cli(job: BuildJob, command: list[str], grace: float = STOP_GRACE) -> tuple[int, str, str]:
    """Run the CLI; return its exit code, stdout, and an error when it overran or cannot run.

    Past the job's `kill_after` seconds it gets SIGTERM, which makes it cancel, clean up and
    print its report; SIGKILL follows only when it has not exited `grace` seconds later.
    """
    kill_after = job.kill_after
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=cli_environment(job),
            text=True,
        )
    except OSError as error:
        return -1, "", f"cannot run the CLI: {error}"
    try:
        stdout, _ = process.communicate(timeout=kill_after)
        return process.returncode, stdout, ""
    except subprocess.TimeoutExpired:
        pass
    log(f"the CLI ran longer than {int(kill_after)} s: SIGTERM, {int(grace)} s to clean up")
    process.send_signal(signal.SIGTERM)
    try:
        stdout, _ = process.communicate(timeout=grace)
        return -1, stdout, f"the CLI ran longer than {int(kill_after)} s and was stopped"
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return (
            -1,
            "",
            f"the CLI ran longer than {int(kill_after)} s and was killed when it had not "
            f"stopped {int(grace)} s after SIGTERM",
        )


def look_up(job: BuildJob) -> tuple[list[BuiltImage], list[Lookup]]:
    """Return the looked-up images that exist already, and the lookups that found none."""
    found, missing = [], []
    for lookup in job.request.lookups:
        try:
            done = call(job, lookup_argv(job, lookup), job.lookup_timeout)
        except (OSError, subprocess.TimeoutExpired) as error:
            log(f"lookup of {lookup.name} in {lookup.cloud} failed: {error}")
            missing.append(lookup)
            continue
        image = found_image(lookup, done.stdout) if done.returncode == 0 else None
        if image is None:
            log(f"no image {lookup.name} in {lookup.cloud} yet")
            missing.append(lookup)
        else:
            found.append(image)
    return found, missing


def copy_missing(job: BuildJob, missing: list[Lookup]) -> CliAnswer | None:
    """Copy what the lookups missed from the build cloud; None when only a build can help."""
    answer = CliAnswer()
    for cloud, bases in copy_plan(missing).items():
        command = copy_argv(job, cloud, bases)
        log(f"copy {job.run_id}: {' '.join(command[1:])}")
        code, stdout, error = run_cli(job, command)
        try:
            copied = CliAnswer.model_validate_json(stdout)
        except pydantic.ValidationError:
            log(f"copy to {cloud} gave no JSON answer (exit {code} {error}): building")
            return None
        if needs_build(copied):
            log(f"the build cloud has no image to copy to {cloud}: building")
            return None
        answer.images += copied.images
        answer.failures += copied.failures
    return answer


def sweep(job: BuildJob) -> None:
    """Delete what crashed builds left behind; a failure here never stops the build."""
    for command in sweep_argv(job):
        shown = " ".join(command[1:])
        try:
            done = call(job, command, SWEEP_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as error:
            log(f"sweep {shown} failed: {error}")
            continue
        log(f"sweep {shown}: exit {done.returncode} {done.stdout.strip()}")


def make_result(job: BuildJob, code: int, stdout: str, error: str) -> BuildResult:
    """Return the result the charm reads."""
    result = BuildResult(
        run_id=job.run_id,
        started_at=job.started_at,
        finished_at=_now(),
        exit_code=code,
        error=error,
    )
    # A CLI stopped by SIGTERM still prints its report: keep what it built and what failed.
    if error and not stdout.strip():
        return result
    try:
        answer = CliAnswer.model_validate_json(stdout)
    except pydantic.ValidationError:
        result.error = error or f"the CLI exited {code} without a JSON answer; see the build log"
        return result
    result.images, result.failures = answer.images, answer.failures
    result.timings = answer.timings
    if error:
        return result
    if code != 0 and not result.failures:
        result.error = f"the CLI exited {code}; see the build log"
    return result


def write_result(path: Path, result: BuildResult) -> None:
    """Write the result atomically, readable only by root like the rest of the state dir."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(result.model_dump_json())
    os.replace(tmp, path)


def dispatch(job: BuildJob) -> None:
    """Bring the charm's build_finished event; update-status covers a failure here."""
    command = [job.juju_exec, job.unit, "JUJU_DISPATCH_PATH=hooks/build-finished", "./dispatch"]
    try:
        done = subprocess.run(
            command, env=job.env, stdin=subprocess.DEVNULL, timeout=3600, check=False
        )
        log(f"juju-exec build-finished exited {done.returncode}")
    except (OSError, subprocess.TimeoutExpired) as error:
        log(f"juju-exec build-finished failed: {error}")


def take_lock(job: BuildJob) -> int | None:
    """Return the locked build lock's descriptor; None when another build keeps it."""
    if job.lock_fd is not None:
        # Inherited already locked from the hook; flock on the same open file proves it.
        fcntl.flock(job.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return job.lock_fd
    # Under systemd nothing is inherited: the hook lets go once we run, so we wait for it.
    fd = os.open(job.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.05)


def run(job: BuildJob) -> int:
    """Build (or look up), record, release, dispatch."""
    lock_fd = take_lock(job)
    if lock_fd is None:
        log(f"job {job.run_id}: another build holds {job.lock}; this one does not run")
        return 1
    found, missing = look_up(job) if job.request.lookups else ([], [])
    # A new cloud gets existing images (its own, else copies from the build cloud); only
    # when the build cloud has none does it get a build (which serves every cloud).
    copied = copy_missing(job, missing) if job.request.lookups else None
    if copied is not None:
        answer = CliAnswer(images=found + copied.images, failures=copied.failures)
        result = make_result(job, 1 if copied.failures else 0, answer.model_dump_json(), "")
        result.kind = "copy" if missing else "lookup"
    else:
        sweep(job)
        command = build_argv(job)
        log(f"build {job.run_id} starting: {' '.join(command[1:])}")
        result = make_result(job, *run_cli(job, command))
    write_result(Path(job.result), result)
    log(f"{result.kind} {job.run_id} finished: exit {result.exit_code} {result.error}")
    os.close(lock_fd)  # released before the callback, so the handler may start the next one
    dispatch(job)
    return 0


def main(argv: list[str]) -> int:
    """Read the job; detach from the hook unless systemd already did; run it."""
    if len(argv) != 1:
        print("usage: build_runner.py JOB_FILE", file=sys.stderr)
        return 2
    job = read_job(Path(argv[0]))
    # In a new session the hook waits for this first process only; the child carries on as an
    # orphan of init. Under systemd the runner is the service's main process: it must not fork.
    if job.fork and os.fork() > 0:
        return 0
    return run(job)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
