"""Every file and folder this unit uses on the machine, in one value tests point elsewhere.

The state folder (0700) holds the job records (src/job_records.py), clouds.yaml and the build
lock; the log folder the build log; the venv the CLI. One set per unit, so two units of the
application on one machine never share a file.
"""

import dataclasses
import sys
from pathlib import Path

# The build log's mode: root and its group only (logrotate's copytruncate keeps it for the
# rotated copies).
BUILD_LOG_MODE = 0o640
CLI_NAME = "github-runner-image-builder"
SYSTEMD_RUN = Path("/usr/bin/systemd-run")


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
    # The interpreter that runs the runner script, by default the charm's own; it finds the
    # charm's modules through the PYTHONPATH the launcher gives it (runner_pythonpath).
    runner_python: Path = Path(sys.executable)
    # systemd-run, where systemd manages the machine; None: the runner starts in a new session.
    systemd_run: Path | None = None
    # What Canonical's charm left on the machine (after `juju refresh --switch` to this one): its
    # cron file would dispatch `run` a second time, its clouds.yaml holds passwords in clear.
    canonical_cron: Path = Path("/etc/cron.d/build-runner-image")
    canonical_clouds_yaml: Path = Path("/home/ubuntu/clouds.yaml")

    @classmethod
    def under(
        cls,
        root: Path,
        runner: Path,
        python: Path = Path(sys.executable),
        systemd_run: Path | None = None,
    ) -> "Paths":
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
            systemd_run=systemd_run,
            canonical_cron=root / "cron.d" / "build-runner-image",
            canonical_clouds_yaml=root / "home" / "ubuntu" / "clouds.yaml",
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
    def job(self) -> Path:
        """Return the last started build's job file (0600: it holds the script secrets)."""
        return self.state_dir / "job.json"

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

    @property
    def cron_log(self) -> Path:
        """Return the log of the scheduled `juju-exec` calls."""
        return self.log_dir / "cron.log"


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
        runner=charm_dir / "src" / "job_runner.py",
        system_python=Path("/usr/bin/python3"),
        systemd_run=SYSTEMD_RUN if systemd_manages_machine() else None,
    )


def systemd_manages_machine(booted: Path = Path("/run/systemd/system")) -> bool:
    """Return whether systemd is PID 1 here (sd_booted's test) and systemd-run exists."""
    return booted.is_dir() and SYSTEMD_RUN.exists()


def unit_slug(unit_name: str) -> str:
    """Return the unit's name as a file or service name (app/0 → app-0: no slash, no dot)."""
    return unit_name.replace("/", "-")
