"""Starts the detached job runner on this machine, one job at a time, and clean jobs.

A job is a detached process (src/job_runner.py) that holds a file lock for as long as it runs,
so "is a build running" is simply "is the lock taken". Launch protocol:

1. The hook opens and flocks `build.lock` itself (non-blocking). Taken → a build runs: the hook
   writes the `queued` flag and returns. The next finished-build handler starts the follow-up
   with the state of that moment, so any number of triggers coalesce into one rebuild.
2. Free → the hook writes `current.json` and the job file (job.BuildJob, 0600: it holds the
   script secrets) and starts the runner with that file as its only argument:
   - where systemd runs, as a transient service (`systemd-run --collect`), so that a restart
     of the Juju agent, which kills the agent's process group, does not kill a build. The
     runner takes the lock itself; the hook lets it go and waits (bounded) until the runner
     holds it or has finished. Hooks of a unit never run at once, so nothing slips in between.
   - elsewhere, in a new session (`Popen(start_new_session=True)`), handing it the locked
     descriptor (`pass_fds`), stdin from /dev/null and stdout/stderr into the build log (Juju
     waits for a hook's output pipes to close, so the runner must not inherit them). The runner
     forks once more and the hook only waits for that first process, which exits at once: the
     build is orphaned to init and the lock passes to it without a free moment.
3. The runner runs the CLI, writes `result.json` (job.BuildResult), releases the lock, then
   runs `juju-exec <unit> JUJU_DISPATCH_PATH=hooks/build-finished ./dispatch`, which brings the
   charm's `build_finished` event. update-status handles a lost callback.

Nothing is lost between those steps: a result not yet handled is taken before any new build
(`start` queues instead of overwriting it); a launch that fails is not remembered as started
(current.json is put back); a build found dead gets its cloud resources deleted by build id at
once, by a detached clean job. The records themselves are src/job_records.py's.
"""

import dataclasses
import datetime
import fcntl
import logging
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pydantic

import durable_files
import image_builder_contract
import job
from job import KILL_GRACE, BuildJob, BuildRequest, BuildResult, CleanJob, RunRecord
from job_records import BuildsNow, JobRecords
from unit_paths import BUILD_LOG_MODE, Paths, unit_slug

logger = logging.getLogger(__name__)

RUNNER_START_TIMEOUT = 30  # seconds a hook waits for the runner it launched to hold the lock
LOST = "the build process ended without a result (killed or rebooted?)"
# Below this much free space a lost result is blamed on the disk (the runner reserves 1 MiB).
LOW_DISK = 1 << 20


@dataclasses.dataclass(frozen=True)
class StartOutcome:
    """What a trigger did: started a build, or queued one after the running build."""

    started: bool
    run_id: str


def _import_root(module: object) -> Path:
    """Return the sys.path entry a module was imported from."""
    file = Path(str(getattr(module, "__file__", "")))
    return file.parents[1] if file.name == "__init__.py" else file.parent


def runner_pythonpath() -> str:
    """Return the PYTHONPATH on which the runner finds job.py and pydantic, as the charm does.

    The packed charm keeps its modules in src/ and its dependencies in venv/; the runner runs
    with the machine's python, which has neither.
    """
    import annotated_types  # noqa: PLC0415 - only to find where pydantic's dependencies are
    import pydantic_core  # noqa: PLC0415
    import typing_extensions  # noqa: PLC0415
    import typing_inspection  # noqa: PLC0415

    modules = (job, image_builder_contract, pydantic, pydantic_core, typing_extensions)
    roots = [_import_root(m) for m in (*modules, annotated_types, typing_inspection)]
    return os.pathsep.join(str(root) for root in dict.fromkeys(roots))


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class JobLauncher:
    """Drives the CLI on this machine: launches builds and clean jobs under the build lock."""

    def __init__(
        self,
        paths: Paths,
        unit_name: str,
        proxy_env: Mapping[str, str],
        records: JobRecords | None = None,
    ) -> None:
        self.paths = paths
        self.unit_name = unit_name
        self.records = records if records is not None else JobRecords(paths)
        self._proxy_env = dict(proxy_env)  # the model's proxy, for the CLI's own API calls

    # --- builds ----------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        """Return the CLI's environment without secrets."""
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "OS_CLIENT_CONFIG_FILE": str(self.paths.clouds_yaml),
        }
        env.update(self._proxy_env)
        return env

    @contextmanager
    def _lock(self) -> Iterator[int | None]:
        """Yield the lock's descriptor when this process got the lock, None when a build has it."""
        self.paths.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        try:
            fd = os.open(self.paths.lock, flags, 0o600)
        except IsADirectoryError:  # no runner can hold a folder open for writing
            durable_files.set_aside(self.paths.lock, "a folder")
            fd = os.open(self.paths.lock, flags, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            yield fd
        finally:
            os.close(fd)  # also releases the lock unless a runner inherited it

    def start(self, request: BuildRequest) -> StartOutcome:
        """Start a detached build, or queue one when a build runs; never waits for a build.

        A finished build whose result is not taken yet (its callback is on its way) queues the
        request too: the handler of that result publishes it, then starts the queued build.
        Only a build that was launched is remembered (current.json, the fingerprint).
        """
        with self._lock() as fd:
            if fd is None or self.records.result_waiting():
                self.records.queue()
                current = self.records.current()
                return StartOutcome(started=False, run_id=current.run_id if current else "")
            run = RunRecord(
                run_id=uuid.uuid4().hex,
                started_at=_utcnow(),
                clouds=list(request.clouds),
                prefix=request.spec.image.prefix,
            )
            request = request.tagged(run.run_id)
            self.paths.log_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
            before = self.records.record_start(run)
            try:
                if self.paths.systemd_run is None:
                    self._launch_in_session(fd, self._job(run, request, lock_fd=fd))
            except BaseException:
                self._forget(before)
                raise
        if self.paths.systemd_run is not None:
            try:
                # Launched after the lock is let go: the service takes it itself.
                self._launch_under_systemd(self.paths.systemd_run, self._job(run, request))
            except BaseException:
                self._forget(before)
                raise
        # A build starting now uses the newest state, which is all a queued request asks.
        self.records.drop_queued()
        self.records.remember_fingerprint(request.fingerprint)
        logger.info("build %s started (%s)", run.run_id, ", ".join(request.clouds))
        return StartOutcome(started=True, run_id=run.run_id)

    def _forget(self, before: str | None) -> None:
        """Undo a launch that failed: the last build stays the last one; no secrets stay."""
        self.records.undo_start(before)
        self.paths.job.unlink(missing_ok=True)

    def _job(self, run: RunRecord, request: BuildRequest, lock_fd: int | None = None) -> Path:
        """Write the job file for this run; return its path."""
        build = BuildJob(
            run_id=run.run_id,
            started_at=run.started_at,
            unit=self.unit_name,
            cli=str(self.paths.cli),
            juju_exec=str(self.paths.juju_exec),
            result=str(self.paths.result),
            lock=str(self.paths.lock),
            lock_fd=lock_fd,
            fork=lock_fd is not None,
            env=self._env(),
            request=request,
        )
        durable_files.write(self.paths.job, build.model_dump_json(), mode=0o600)
        return self.paths.job

    def _runner_argv(self, job_file: Path) -> list[str]:
        return [str(self.paths.runner_python), str(self.paths.runner), str(job_file)]

    def _open_build_log(self) -> int:
        """Open the build log for appending, created (or narrowed to) BUILD_LOG_MODE.

        cos-agent ships it, and a mode of 0644 would let every local user read it.
        """
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self.paths.build_log, flags, BUILD_LOG_MODE)
        os.fchmod(fd, BUILD_LOG_MODE)
        return fd

    def _popen_runner(
        self, job_file: Path, pass_fds: tuple[int, ...] = ()
    ) -> subprocess.Popen[bytes]:
        """Start the runner's first process in a new session, writing into the build log."""
        env = {**self._env(), "PYTHONPATH": runner_pythonpath()}
        with os.fdopen(self._open_build_log(), "ab") as log:
            return subprocess.Popen(
                self._runner_argv(job_file),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.paths.state_dir,
                pass_fds=pass_fds,
                start_new_session=True,
            )

    def _launch_in_session(self, lock_fd: int, job_file: Path) -> None:
        first = self._popen_runner(job_file, pass_fds=(lock_fd,))
        # The runner's first process forks the real build and exits at once.
        try:
            code = first.wait(timeout=RUNNER_START_TIMEOUT)
        except subprocess.TimeoutExpired:
            first.kill()
            first.wait()
            raise RuntimeError(
                f"build runner did not start within {RUNNER_START_TIMEOUT} s; "
                f"see {self.paths.build_log}"
            ) from None
        if code != 0:
            raise RuntimeError(
                f"build runner failed to start (exit {code}); see {self.paths.build_log}"
            )

    def systemd_unit(self, run_id: str) -> str:
        """Return the name of the transient service that runs one build."""
        return f"{unit_slug(self.unit_name)}-build-{run_id[:12]}"

    def _systemd_argv(
        self, systemd_run: Path, unit: str, description: str, job_file: Path
    ) -> list[str]:
        log = self.paths.build_log
        # systemd's append: would create it with its own umask (0644): create it first.
        os.close(self._open_build_log())
        return [
            str(systemd_run),
            f"--unit={unit}",
            f"--description={description}",
            "--collect",  # unloaded when it ends, whatever its exit code
            "--quiet",
            f"--working-directory={self.paths.state_dir}",
            f"--property=StandardOutput=append:{log}",
            f"--property=StandardError=append:{log}",
            # On stop, SIGTERM reaches the CLI too: let it undo what it created.
            f"--property=TimeoutStopSec={KILL_GRACE}",
            # Not secret; everything else the runner needs is in the job file.
            f"--setenv=PYTHONPATH={runner_pythonpath()}",
            "--",
            *self._runner_argv(job_file),
        ]

    def _launch_under_systemd(self, systemd_run: Path, job_file: Path) -> None:
        run_id = BuildJob.model_validate_json(job_file.read_text()).run_id
        log = self.paths.build_log
        description = f"GitHub runner image build {run_id} of {self.unit_name}"
        argv = self._systemd_argv(systemd_run, self.systemd_unit(run_id), description, job_file)
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"systemd-run could not start the build (exit {done.returncode}): "
                f"{done.stderr.strip()[:300]}"
            )
        # Wait until the service holds the lock (or already finished), so that the next hook
        # sees the build as running, not as one that vanished without a result.
        deadline = time.monotonic() + RUNNER_START_TIMEOUT
        while not (self.is_running() or self.records.finished(run_id)):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the build service {self.systemd_unit(run_id)} did not start within "
                    f"{RUNNER_START_TIMEOUT} s; see {log} and journalctl"
                )
            time.sleep(0.05)

    def is_running(self) -> bool:
        """Return whether a build holds the lock right now."""
        with self._lock() as fd:
            return fd is None

    def builds_now(self) -> BuildsNow:
        """Return the unit's builds now (running, queued, last result)."""
        return self.records.now(self.is_running())

    def take_result(self) -> BuildResult | None:
        """Return the newest finished build not yet handled, marking it handled.

        A build that ended without a result (killed, machine rebooted) is reported as failed,
        and what it left in the build cloud is deleted now by a detached clean job.
        """
        now = self.builds_now()
        if now.running:
            return None
        current, result = now.current, now.last_result
        if current is None and result is not None:  # current.json was unreadable
            current = RunRecord(run_id=result.run_id, started_at=result.started_at)
        if current is None or self.records.handled() == current.run_id:
            return None
        if result is None or result.run_id != current.run_id:
            result = BuildResult(
                run_id=current.run_id,
                started_at=current.started_at,
                finished_at=_utcnow(),
                exit_code=-1,
                error=LOST + self._disk_note(),
                lost=True,
            )
            self.records.keep_result(result)
            self.start_clean(current)
        self.records.mark_handled(result.run_id)
        return result

    def _disk_note(self) -> str:
        try:
            free = shutil.disk_usage(self.paths.state_dir).free
        except OSError:
            return ""
        if free >= LOW_DISK:
            return ""
        return f"; the unit's disk is full ({free} bytes free in {self.paths.state_dir})"

    def start_clean(self, run: RunRecord) -> None:
        """Start a detached `clean --build-id` of a dead build; a failure is only logged.

        Its SHUTOFF builder holds the build's user-data, secrets included: it goes now, not at
        the next sweep. The hook does not wait for the clean-up.
        """
        clean = CleanJob(
            build_id=run.run_id,
            prefix=run.prefix,
            cli=str(self.paths.cli),
            env=self._env(),
            fork=self.paths.systemd_run is None,
        )
        path = self.paths.state_dir / f"clean-{run.run_id}.json"
        try:
            durable_files.write(path, clean.model_dump_json())
            self.paths.log_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
            if self.paths.systemd_run is None:
                self._start_in_session(path)
            else:
                unit = f"{unit_slug(self.unit_name)}-clean-{run.run_id[:12]}"
                description = f"clean-up of the dead image build {run.run_id} of {self.unit_name}"
                argv = self._systemd_argv(self.paths.systemd_run, unit, description, path)
                subprocess.run(
                    argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=True
                )
        except (OSError, durable_files.WriteError, subprocess.SubprocessError) as error:
            logger.error(
                "cannot start the clean-up of the dead build %s (%s); the next sweep removes "
                "what it left",
                run.run_id,
                error,
            )
            return
        logger.info("build %s died: deleting what it left in the build cloud", run.run_id)

    def _start_in_session(self, job_file: Path) -> None:
        """Start a runner that needs no lock in a new session (it forks away at once)."""
        self._popen_runner(job_file).wait(timeout=RUNNER_START_TIMEOUT)
