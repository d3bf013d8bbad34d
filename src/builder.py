"""The only module that touches the machine: installs the CLI, writes its files, launches builds.

A build is a detached process (src/build_runner.py) that holds a file lock for as long as it
runs, so "is a build running" is simply "is the lock taken". Launch protocol:

1. The hook opens and flocks `build.lock` itself (non-blocking). Taken → a build runs: the hook
   writes the `queued` flag and returns. The next finished-build handler starts the follow-up
   with the state of that moment, so any number of triggers coalesce into one rebuild.
2. Free → the hook writes `current.json` and starts the runner with
   `Popen(start_new_session=True)`, handing it the locked descriptor (`pass_fds`), stdin from
   /dev/null and stdout/stderr into the build log (Juju waits for a hook's output pipes to
   close, so the runner must not inherit them).
   The runner forks once more and the hook only waits for that first process, which exits at
   once: the build is orphaned to init and the lock passes to it without a free moment.
3. The runner runs the CLI, writes `result.json`, releases the lock, then runs
   `juju-exec <unit> JUJU_DISPATCH_PATH=hooks/build-finished ./dispatch`, which brings the
   charm's `build_finished` event. update-status handles a result whose callback was lost.
"""

import dataclasses
import datetime
import fcntl
import json
import logging
import os
import subprocess
import sys
import tempfile
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pydantic
import yaml
from charmlibs import apt
from crontab import CronTab

from build_job import (
    BUILD_CLOUD,
    BUILD_TIMEOUT,
    KILL_GRACE,
    SECRET_ENV_PREFIX,
    BuildRequest,
    BuildResult,
    BuildState,
    RunRecord,
    StartOutcome,
)

logger = logging.getLogger(__name__)
_Model = TypeVar("_Model", bound=pydantic.BaseModel)

APT_PACKAGES = ["python3-venv", "cron", "logrotate"]
CLI_NAME = "github-runner-image-builder"
LOOKUP_TIMEOUT = 120  # seconds per latest-build-id call, in the runner


@dataclasses.dataclass(frozen=True)
class Paths:
    """Every place on the machine the charm uses; tests point them into a temporary folder."""

    state_dir: Path
    log_dir: Path
    venv: Path
    wheels: Path
    cron_dir: Path
    logrotate_dir: Path
    juju_exec: Path
    runner: Path
    system_python: Path
    # The interpreter that runs the runner script (stdlib only), by default the charm's own.
    runner_python: Path = Path(sys.executable)

    @classmethod
    def under(cls, root: Path, runner: Path, python: Path = Path(sys.executable)) -> "Paths":
        """Return paths that all live inside `root` (tests, a developer's machine)."""
        return cls(
            state_dir=root / "state",
            log_dir=root / "log",
            venv=root / "venv",
            wheels=root / "wheels",
            cron_dir=root / "cron.d",
            logrotate_dir=root / "logrotate.d",
            juju_exec=root / "bin" / "juju-exec",
            runner=runner,
            system_python=python,
            runner_python=python,
        )

    @property
    def cli(self) -> Path:
        """Return the CLI's console script inside the venv."""
        return self.venv / "bin" / CLI_NAME

    @property
    def clouds_yaml(self) -> Path:
        """Return the clouds.yaml the CLI reads (OS_CLIENT_CONFIG_FILE)."""
        return self.state_dir / "clouds.yaml"

    @property
    def lock(self) -> Path:
        """Return the lock a running build holds."""
        return self.state_dir / "build.lock"

    @property
    def queued(self) -> Path:
        """Return the flag that asks for one more build after the running one."""
        return self.state_dir / "queued"

    @property
    def current(self) -> Path:
        """Return the record of the last started build."""
        return self.state_dir / "current.json"

    @property
    def result(self) -> Path:
        """Return the last finished build's result (written by the runner)."""
        return self.state_dir / "result.json"

    @property
    def handled(self) -> Path:
        """Return the file naming the last result the charm has published."""
        return self.state_dir / "handled"

    @property
    def catalogue(self) -> Path:
        """Return the known images per cloud."""
        return self.state_dir / "images.json"

    @property
    def fingerprint(self) -> Path:
        """Return the digest of the config the last build started with."""
        return self.state_dir / "fingerprint"

    @property
    def build_log(self) -> Path:
        """Return the log the runner and the CLI write to."""
        return self.log_dir / "build.log"


def default_paths(charm_dir: Path, unit_name: str) -> Paths:
    """Return the machine's real paths for this unit."""
    slug = unit_name.replace("/", "-")
    return Paths(
        state_dir=Path("/var/lib/github-runner-image-builder") / slug,
        log_dir=Path("/var/log/github-runner-image-builder") / slug,
        venv=Path("/opt/github-runner-image-builder") / slug / "venv",
        wheels=charm_dir / "app-wheels",
        cron_dir=Path("/etc/cron.d"),
        logrotate_dir=Path("/etc/logrotate.d"),
        juju_exec=Path("/usr/bin/juju-exec"),
        runner=charm_dir / "src" / "build_runner.py",
        system_python=Path("/usr/bin/python3"),
    )


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    """Write a file so readers see the old or the new content, never half; mode set before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclasses.dataclass(frozen=True)
class CloudAuth:
    """One clouds.yaml entry's credentials (the password never appears in a repr)."""

    auth_url: str
    password: str = dataclasses.field(repr=False)
    project_domain_name: str
    project_name: str
    user_domain_name: str
    username: str


def _cloud_entry(auth: CloudAuth) -> dict[str, object]:
    return {
        "auth": {
            "auth_url": auth.auth_url,
            "password": auth.password,
            "project_domain_name": auth.project_domain_name,
            "project_name": auth.project_name,
            "user_domain_name": auth.user_domain_name,
            "username": auth.username,
        },
        "identity_api_version": 3,
        "interface": "public",
    }


class Builder:
    """Installs and drives the CLI on this machine."""

    def __init__(
        self,
        paths: Paths,
        unit_name: str,
        proxy_env: Mapping[str, str],
        apt_install: Callable[[list[str]], object],
    ) -> None:
        self.paths = paths
        self.unit_name = unit_name
        self._proxy_env = dict(proxy_env)  # the model's proxy, for the CLI's own API calls
        self._apt_install = apt_install

    # --- install ---------------------------------------------------------------------------

    def install(self) -> None:
        """Install the CLI and its surroundings; running it again is harmless."""
        self._apt_install(APT_PACKAGES)
        self.paths.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.paths.log_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        self._install_venv()
        self._write_logrotate()

    def _install_venv(self) -> None:
        # Only wheels shipped in the charm: a unit often has no route to PyPI.
        if not self.paths.wheels.is_dir():
            raise RuntimeError(f"no CLI wheels in {self.paths.wheels}; the charm was packed badly")
        subprocess.run(
            [str(self.paths.system_python), "-m", "venv", str(self.paths.venv)],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                str(self.paths.venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-index",
                "--find-links",
                str(self.paths.wheels),
                "--upgrade",
                "--force-reinstall",
                CLI_NAME,
            ],
            check=True,
            capture_output=True,
        )

    def _write_logrotate(self) -> None:
        # copytruncate: a running build keeps its log file open.
        text = (
            f"{self.paths.log_dir}/*.log {{\n"
            "    weekly\n    rotate 8\n    compress\n    delaycompress\n"
            "    missingok\n    notifempty\n    copytruncate\n}\n"
        )
        _write_atomic(self.logrotate_file, text, mode=0o644)

    @property
    def logrotate_file(self) -> Path:
        """Return this unit's logrotate entry."""
        return self.paths.logrotate_dir / self._slug

    @property
    def cron_file(self) -> Path:
        """Return this unit's cron file (cron.d names may not hold dots or slashes)."""
        return self.paths.cron_dir / self._slug

    @property
    def _slug(self) -> str:
        return self.unit_name.replace("/", "-")

    # --- configuration files ---------------------------------------------------------------

    def write_clouds_yaml(
        self, build_cloud: CloudAuth, upload_clouds: Mapping[str, CloudAuth]
    ) -> None:
        """Write clouds.yaml (0600 from the start): the build cloud and every requirer cloud."""
        clouds = {BUILD_CLOUD: _cloud_entry(build_cloud)}
        for cloud_id, auth in sorted(upload_clouds.items()):
            clouds[cloud_id] = _cloud_entry(auth)
        _write_atomic(self.paths.clouds_yaml, yaml.safe_dump({"clouds": clouds}), mode=0o600)

    def write_cron(self, interval_hours: int) -> None:
        """Write the cron file that dispatches the charm's `run` event every interval."""
        # Spread units over the hour so several builders do not start at the same minute.
        minute = zlib.crc32(self.unit_name.encode()) % 60
        hours = f"*/{interval_hours}" if interval_hours < 24 else "0"
        command = (
            f"{self.paths.juju_exec} {self.unit_name} JUJU_DISPATCH_PATH=hooks/run ./dispatch"
            f" >> {self.paths.log_dir}/cron.log 2>&1"
        )
        tab = CronTab(user=False)
        job = tab.new(command=command, user="root", comment=f"{self.unit_name} image build")
        job.setall(f"{minute} {hours} * * *")
        _write_atomic(self.cron_file, tab.render(), mode=0o644)

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
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
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
        """Start a detached build, or queue one when a build runs; never waits for a build."""
        with self._lock() as fd:
            if fd is None:
                self.paths.queued.touch(mode=0o600)
                current = self._read(self.paths.current, RunRecord)
                return StartOutcome(started=False, run_id=current.run_id if current else "")
            run = RunRecord(
                run_id=uuid.uuid4().hex, started_at=_utcnow(), clouds=list(request.clouds)
            )
            # A build starting now uses the newest state, which is all a queued request asks.
            self.paths.queued.unlink(missing_ok=True)
            _write_atomic(self.paths.current, run.model_dump_json())
            _write_atomic(self.paths.fingerprint, request.fingerprint)
            self._launch(fd, run, request)
            return StartOutcome(started=True, run_id=run.run_id)

    def _launch(self, lock_fd: int, run: RunRecord, request: BuildRequest) -> None:
        self.paths.log_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        argv = [
            str(self.paths.runner_python),
            str(self.paths.runner),
            "--lock-fd",
            str(lock_fd),
            "--run-id",
            run.run_id,
            "--started-at",
            run.started_at.isoformat(),
            "--result",
            str(self.paths.result),
            "--juju-exec",
            str(self.paths.juju_exec),
            "--unit",
            self.unit_name,
            "--kill-after",
            str(BUILD_TIMEOUT + KILL_GRACE),
            "--secret-prefix",
            SECRET_ENV_PREFIX,
            "--lookups",
            json.dumps([lookup.model_dump() for lookup in request.lookups]),
            "--lookup-timeout",
            str(LOOKUP_TIMEOUT),
            "--sweeps",
            json.dumps([list(sweep) for sweep in request.sweeps]),
            "--",
            str(self.paths.cli),
            *request.args,
        ]
        env = self._env() | dict(request.secret_env)
        with self.paths.build_log.open("ab") as log:
            first = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.paths.state_dir,
                pass_fds=(lock_fd,),
                start_new_session=True,
            )
        # The runner's first process forks the real build and exits at once.
        code = first.wait(timeout=30)
        if code != 0:
            raise RuntimeError(
                f"build runner failed to start (exit {code}); see {self.paths.build_log}"
            )
        logger.info("build %s started: %s %s", run.run_id, self.paths.cli, " ".join(request.args))

    def is_running(self) -> bool:
        """Return whether a build holds the lock right now."""
        with self._lock() as fd:
            return fd is None

    def state(self) -> BuildState:
        """Return the unit's build state (running, queued, last result)."""
        return BuildState(
            running=self.is_running(),
            queued=self.paths.queued.exists(),
            current=self._read(self.paths.current, RunRecord),
            last_result=self._read(self.paths.result, BuildResult),
        )

    def take_result(self) -> BuildResult | None:
        """Return the newest finished build not yet handled, marking it handled.

        A build that ended without a result (killed, machine rebooted) is reported as failed.
        """
        state = self.state()
        if state.running or state.current is None:
            return None
        handled = self.paths.handled.read_text().strip() if self.paths.handled.exists() else ""
        if handled == state.current.run_id:
            return None
        result = state.last_result
        if result is None or result.run_id != state.current.run_id:
            result = BuildResult(
                run_id=state.current.run_id,
                started_at=state.current.started_at,
                finished_at=_utcnow(),
                exit_code=-1,
                error="the build process ended without a result (killed or rebooted?)",
            )
            _write_atomic(self.paths.result, result.model_dump_json())
        _write_atomic(self.paths.handled, result.run_id)
        return result

    def stored_fingerprint(self) -> str:
        """Return the config digest of the last started build ('' before the first)."""
        path = self.paths.fingerprint
        return path.read_text().strip() if path.exists() else ""

    # --- catalogue -------------------------------------------------------------------------

    def load_catalogue(self) -> dict[str, dict[str, str]]:
        """Return the known images: cloud id -> "base/arch" -> image ID."""
        if not self.paths.catalogue.exists():
            return {}
        data = json.loads(self.paths.catalogue.read_text())
        return {str(c): {str(k): str(v) for k, v in m.items()} for c, m in data.items()}

    def save_catalogue(self, catalogue: Mapping[str, Mapping[str, str]]) -> None:
        """Persist the known images."""
        _write_atomic(self.paths.catalogue, json.dumps(catalogue, sort_keys=True, indent=1))

    @staticmethod
    def _read(path: Path, model: type[_Model]) -> _Model | None:
        if not path.exists():
            return None
        try:
            return model.model_validate_json(path.read_text())
        except pydantic.ValidationError:
            logger.warning("ignoring unreadable %s", path)
            return None


def apt_install(packages: list[str]) -> object:
    """Install Debian packages (the machine's package manager; tests pass a recorder)."""
    return apt.add_package(packages, update_cache=True)
