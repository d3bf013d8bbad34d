#!/usr/bin/env python3
"""Runs one job outside any hook; started by job_launcher.JobLauncher.start with the job file.

Usage: `job_runner.py JOB_FILE`. The job (job.BuildJob, written by the charm) says
everything; the runner imports job.py from the charm's src/ and pydantic from the charm's
venv (the launcher puts both on PYTHONPATH). It takes the build lock (inherited already locked
in a new session; taken itself under systemd), runs the lookups or the sweeps and the build,
writes the result (job.BuildResult), releases the lock and finally dispatches the charm's
`build_finished` event with juju-exec. Secrets live in the job file, which it deletes once read,
and reach only the CLI's environment.

Nothing of a build is lost to a crash or a full disk:
- every CLI it starts inherits the locked descriptor, so the lock stays taken while a CLI runs
  even when the runner itself is killed; the CLI gets SIGTERM when the runner dies (it cancels
  and cleans up), as systemd does to the rest of the service's cgroup;
- the space of the result is reserved when the job starts (`.result.json.reserve`): a disk
  that fills during the build cannot lose the result, and no partial file is ever left;
- a CLI that crashed or was killed gets its build's resources deleted by build id at once.

A clean job (job.CleanJob, started by the charm when it learns a build died) only runs
`clean --build-id` in the build cloud: no lock, no result.
"""

import ctypes
import datetime
import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pydantic

import durable_files
from image_builder_contract.report import ImageResult, Report
from image_builder_contract.rules import redact_urls
from image_builder_contract.text import one_line
from job import (
    CLEAN_TIMEOUT,
    BuildJob,
    BuildResult,
    CleanJob,
    Lookup,
    ResultKind,
    build_argv,
    clean_argv,
    cli_environment,
    copy_argv,
    copy_plan,
    found_image,
    lookup_argv,
    needs_build,
    sweep_argv,
)

SWEEP_TIMEOUT = CLEAN_TIMEOUT
# Bytes set aside for the result when the job starts; a result is a few KB.
RESULT_RESERVE = 1 << 20
PR_SET_PDEATHSIG = 1  # prctl(2)
# Seconds a runner started by systemd waits for the hook that launched it to let the lock go.
LOCK_WAIT = 60
# Seconds an overrunning CLI gets, after SIGTERM, to clean up every cloud and print its
# report; only then is it SIGKILLed. Its cleanups wait at most 300 s for a server to go.
STOP_GRACE = 600


# A runner line may quote a whole command line (--protect lists every published ID).
RUNNER_LINE_LIMIT = 20_000
# Every runner line carries this word: the Loki rules, the dashboard and operators' queries
# match it (it predates the module's name, job_runner).
LOG_TAG = "build_runner"


def log(message: str) -> None:
    """Write one timestamped line to the build log (our stdout), URL credentials replaced.

    One line whatever the message quotes (a CLI's answer, a cloud's error): a newline in it
    must not forge a line such as `build ... finished: exit 0`, which the Loki rules read.
    """
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    line = one_line(redact_urls(message), RUNNER_LINE_LIMIT)
    print(f"{now} {LOG_TAG}: {line}", flush=True)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def read_job(path: Path) -> BuildJob:
    """Return the job the charm wrote."""
    return BuildJob.model_validate_json(path.read_text())


def _die_with_runner() -> Callable[[], None] | None:
    """Return what makes a child get SIGTERM when the runner dies (Linux), None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    runner = os.getpid()

    def arm() -> None:  # in the child, before exec; the signal survives exec
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != runner:  # the runner died before prctl took effect
            os._exit(1)

    return arm


def _child(lock_fd: int | None) -> dict[str, object]:
    """Return the Popen arguments that tie a CLI to this runner's lock and life."""
    return {"pass_fds": () if lock_fd is None else (lock_fd,), "preexec_fn": _die_with_runner()}


def call(
    job: BuildJob, command: list[str], timeout: float, lock_fd: int | None = None
) -> "subprocess.CompletedProcess[str]":
    """Run a CLI command; stderr goes straight to the build log, stdout is returned."""
    return subprocess.run(  # type: ignore[call-overload,no-any-return]
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env=cli_environment(job),
        text=True,
        timeout=timeout,
        check=False,
        **_child(lock_fd),
    )


def run_cli(
    job: BuildJob, command: list[str], grace: float = STOP_GRACE, lock_fd: int | None = None
) -> tuple[int, str, str]:
    """Run the CLI; return its exit code, stdout, and an error when it overran or cannot run.

    Past the job's `kill_after` seconds it gets SIGTERM, which makes it cancel, clean up and
    print its report; SIGKILL follows only when it has not exited `grace` seconds later. The
    CLI holds `lock_fd` too: killing the runner does not free the lock while the CLI builds.
    """
    kill_after = job.kill_after
    try:
        process = subprocess.Popen(  # type: ignore[call-overload]
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=cli_environment(job),
            text=True,
            **_child(lock_fd),
        )
    except OSError as error:
        return -1, "", f"cannot run the CLI: {error}"
    try:
        stdout: str
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


def look_up(job: BuildJob, lock_fd: int | None = None) -> tuple[list[ImageResult], list[Lookup]]:
    """Return the looked-up images that exist already, and the lookups that found none."""
    found, missing = [], []
    for lookup in job.request.lookups:
        try:
            done = call(job, lookup_argv(job, lookup), job.lookup_timeout, lock_fd)
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


def copy_missing(
    job: BuildJob, missing: list[Lookup], lock_fd: int | None = None
) -> Report | None:
    """Copy what the lookups missed from the build cloud; None when only a build can help."""
    answer = Report()
    for cloud, bases in copy_plan(missing).items():
        command = copy_argv(job, cloud, bases)
        log(f"copy {job.run_id}: {' '.join(command[1:])}")
        code, stdout, error = run_cli(job, command, lock_fd=lock_fd)
        try:
            copied = Report.from_json(stdout)
        except pydantic.ValidationError:
            log(f"copy to {cloud} gave no JSON answer (exit {code} {error}): building")
            return None
        if needs_build(copied):
            log(f"the build cloud has no image to copy to {cloud}: building")
            return None
        answer.images += copied.images
        answer.failures += copied.failures
    return answer


def sweep(job: BuildJob, lock_fd: int | None = None) -> None:
    """Delete what crashed builds left behind; a failure here never stops the build."""
    for command in sweep_argv(job):
        shown = " ".join(command[1:])
        try:
            done = call(job, command, SWEEP_TIMEOUT, lock_fd)
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
        answer = Report.from_json(stdout)
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


def spec_path(job: BuildJob) -> Path:
    """Return the file the build's spec is handed to the CLI in, beside the result."""
    return Path(job.result).with_name(f"spec-{job.run_id}.json")


def reserve_path(result: Path) -> Path:
    """Return the file that holds the result's space until the result is written."""
    return result.with_name(f".{result.name}.reserve")


def reserve_result(result: Path) -> None:
    """Allocate the result's space now, while the disk has room (a stale reserve is reused)."""
    reserve = reserve_path(result)
    size = RESULT_RESERVE
    fd = os.open(reserve, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.posix_fallocate(fd, 0, size)
        os.fsync(fd)
    except OSError:
        os.close(fd)
        reserve.unlink(missing_ok=True)
        raise
    os.close(fd)
    durable_files.fsync_dir(result.parent)


def _disk_full(job: BuildJob, error: OSError) -> BuildResult:
    return BuildResult(
        run_id=job.run_id,
        started_at=job.started_at,
        finished_at=_now(),
        exit_code=-1,
        error=f"disk full: cannot write the result in {Path(job.result).parent}: "
        f"{os.strerror(error.errno or errno.ENOSPC)}; free space on the unit's disk",
    )


def write_result(path: Path, result: BuildResult, short: BuildResult | None = None) -> BuildResult:
    """Write the result (0600, like the rest of the state dir); return what was written.

    It goes into the space reserved at the start, so a disk that filled meanwhile cannot lose
    it. A result larger than the reserve needs new space; when there is none, `short` (the
    same without its failures) is written into the reserve instead. Nothing partial stays.
    """
    reserve = reserve_path(path)
    size = reserve.stat().st_size if reserve.exists() else 0
    data = result.model_dump_json().encode()
    if len(data) > size:
        try:
            durable_files.write_atomic(path, data)
        except OSError as error:
            if not size or short is None:
                raise
            log(f"no room for the whole result ({len(data)} bytes): {error}; a short one instead")
            result, data = short, short.model_dump_json().encode()
        else:
            reserve.unlink(missing_ok=True)
            return result
    fd = os.open(reserve, os.O_WRONLY | os.O_CLOEXEC)
    durable_files.replace_with(fd, reserve, path, data)
    return result


def record(job: BuildJob, result: BuildResult) -> BuildResult:
    """Write the job's result; return what was written (OSError: nothing could be)."""
    short = result.model_copy(update={"failures": []})
    short.error = result.error or (
        f"disk full: the report of {len(result.failures)} failures did not fit in "
        f"{Path(job.result).parent}; see the build log"
    )
    return write_result(Path(job.result), result, short)


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


def clean_up(job: BuildJob, lock_fd: int | None = None) -> None:
    """Delete this build's resources by its id: its CLI crashed or was killed mid-way."""
    prefix = job.request.spec.image.prefix
    clean = CleanJob(build_id=job.run_id, prefix=prefix, cli=job.cli, env=job.env)
    shown = " ".join(clean_argv(clean)[1:])
    try:
        done = call(job, clean_argv(clean), clean.timeout, lock_fd)
        log(f"clean-up {shown}: exit {done.returncode} {done.stdout.strip()}")
    except (OSError, subprocess.TimeoutExpired) as error:
        log(f"clean-up {shown} failed: {error}")


def build(job: BuildJob, lock_fd: int) -> BuildResult:
    """Look up, copy or build; return the result."""
    if job.request.lookups:
        found, missing = look_up(job, lock_fd)
        # A new cloud gets existing images (its own, else copies from the build cloud); only
        # when the build cloud has none does it get a build (which serves every cloud).
        copied = copy_missing(job, missing, lock_fd)
        if copied is not None:
            answer = Report(images=found + copied.images, failures=copied.failures)
            result = make_result(job, 1 if copied.failures else 0, answer.to_json(), "")
            result.kind = ResultKind.COPY if missing else ResultKind.LOOKUP
            return result
    sweep(job, lock_fd)
    spec_file = spec_path(job)
    # The spec holds no secret (they reach the CLI in its environment); the operator reads it
    # here to know what this build was asked to do.
    log(f"build {job.run_id} spec: {job.request.spec.model_dump_json()}")
    try:
        durable_files.write_atomic(spec_file, job.request.spec.model_dump_json())
    except OSError as error:
        return make_result(job, -1, "", f"cannot write the build spec {spec_file}: {error}")
    command = build_argv(job, str(spec_file))
    log(f"build {job.run_id} starting: {' '.join(command[1:])}")
    try:
        result = make_result(job, *run_cli(job, command, lock_fd=lock_fd))
    finally:
        spec_file.unlink(missing_ok=True)
    if result.error:  # crashed, killed or stopped: it may not have undone everything
        clean_up(job, lock_fd)
    return result


def run(job: BuildJob) -> int:
    """Reserve the result's space, build (or look up), record, release, dispatch."""
    lock_fd = take_lock(job)
    if lock_fd is None:
        log(f"job {job.run_id}: another build holds {job.lock}; this one does not run")
        return 1
    try:
        reserve_result(Path(job.result))
    except OSError as error:
        log(f"disk full: cannot reserve space for the result of {job.run_id}: {error}; no build")
        result = _disk_full(job, error)
    else:
        result = build(job, lock_fd)
    try:
        result = record(job, result)
        log(f"{result.kind} {job.run_id} finished: exit {result.exit_code} {result.error}")
    except OSError as error:
        log(f"disk full: the result of {job.run_id} is lost: {error}")
    os.close(lock_fd)  # released before the callback, so the handler may start the next one
    dispatch(job)
    return 0


def run_clean(job: CleanJob) -> int:
    """Delete one dead build's resources in the build cloud."""
    command = clean_argv(job)
    shown = " ".join(command[1:])
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=job.env,
            text=True,
            timeout=job.timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        log(f"clean-up {shown} failed: {error}")
        return 1
    log(f"clean-up {shown}: exit {done.returncode} {done.stdout.strip()}")
    return 0 if done.returncode == 0 else 1


def main(argv: list[str]) -> int:
    """Read the job; detach from the hook unless systemd already did; run it."""
    if len(argv) != 1:
        print("usage: job_runner.py JOB_FILE", file=sys.stderr)
        return 2
    path = Path(argv[0])
    text = path.read_text()
    job: BuildJob | CleanJob = (
        CleanJob.model_validate_json(text)
        if json.loads(text).get("kind") == "clean"
        else BuildJob.model_validate_json(text)
    )
    # Read once: the secrets it holds do not stay on the disk while the build runs.
    path.unlink(missing_ok=True)
    # In a new session the hook waits for this first process only; the child carries on as an
    # orphan of init. Under systemd the runner is the service's main process: it must not fork.
    if job.fork and os.fork() > 0:
        return 0
    return run_clean(job) if isinstance(job, CleanJob) else run(job)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
