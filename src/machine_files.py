"""The files the charm keeps on the machine: the CLI's venv, clouds.yaml, cron, logrotate.

Installing is idempotent (every hook that may need it runs it again); each file is written
durably with its mode from the start (src/durable_files.py). Jobs are job_launcher.py's.
"""

import dataclasses
import logging
import subprocess
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import yaml
from charmlibs import apt
from crontab import CronTab

import durable_files
from charms.github_runner_image_builder.v0.image import CloudCredentials
from config import BuildCloud
from job import BUILD_CLOUD
from unit_paths import BUILD_LOG_MODE, CLI_NAME, Paths, unit_slug

logger = logging.getLogger(__name__)

APT_PACKAGES = ["python3-venv", "cron", "logrotate"]


@dataclasses.dataclass(frozen=True)
class CloudAuth:
    """One clouds.yaml entry's credentials (the password never appears in a repr)."""

    auth_url: str
    password: str = dataclasses.field(repr=False)
    project_domain_name: str
    project_name: str
    user_domain_name: str
    username: str

    @classmethod
    def of(cls, creds: CloudCredentials | BuildCloud) -> "CloudAuth":
        """Return a requirer's or the build cloud's credentials as clouds.yaml holds them."""
        password = creds.password
        return cls(
            auth_url=creds.auth_url,
            password=password if isinstance(password, str) else password.get_secret_value(),
            project_domain_name=creds.project_domain_name,
            project_name=creds.project_name,
            user_domain_name=creds.user_domain_name,
            username=creds.username,
        )


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


class MachineFiles:
    """Installs the CLI and writes the files around it for one unit."""

    def __init__(
        self, paths: Paths, unit_name: str, apt_install: Callable[[list[str]], object]
    ) -> None:
        self.paths = paths
        self.unit_name = unit_name
        self._apt_install = apt_install

    def install(self) -> None:
        """Install the CLI and its surroundings; running it again is harmless."""
        self._apt_install(APT_PACKAGES)
        self.paths.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.paths.log_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        self._install_venv()
        self._write_logrotate()
        for log in (self.paths.build_log, self.paths.cron_log):
            if log.exists():  # an older charm's, created 0644
                log.chmod(BUILD_LOG_MODE)

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
        durable_files.write(self.logrotate_file, text, mode=0o644)

    @property
    def logrotate_file(self) -> Path:
        """Return this unit's logrotate entry."""
        return self.paths.logrotate_dir / unit_slug(self.unit_name)

    @property
    def cron_file(self) -> Path:
        """Return this unit's cron file (cron.d names may not hold dots or slashes)."""
        return self.paths.cron_dir / unit_slug(self.unit_name)

    def write_clouds_yaml(
        self, build_cloud: CloudAuth, upload_clouds: Mapping[str, CloudAuth]
    ) -> None:
        """Write clouds.yaml (0600 from the start): the build cloud and every requirer cloud.

        Raises durable_files.WriteError (the old file kept) when it cannot be written.
        """
        clouds = {BUILD_CLOUD: _cloud_entry(build_cloud)}
        for cloud_id, auth in sorted(upload_clouds.items()):
            clouds[cloud_id] = _cloud_entry(auth)
        durable_files.write(self.paths.clouds_yaml, yaml.safe_dump({"clouds": clouds}), mode=0o600)

    def read_clouds_yaml_auth(self) -> dict[str, dict[str, object]]:
        """Return each clouds.yaml entry's auth block, as written before (for migrations)."""
        if not self.paths.clouds_yaml.exists():
            return {}
        try:
            data = yaml.safe_load(self.paths.clouds_yaml.read_text()) or {}
            clouds = dict(data.get("clouds") or {})
            return {str(name): dict(entry.get("auth") or {}) for name, entry in clouds.items()}
        except (yaml.YAMLError, AttributeError, TypeError, ValueError):
            logger.warning("ignoring an unreadable %s", self.paths.clouds_yaml)
            return {}

    def remove_canonical_files(self) -> list[Path]:
        """Delete what Canonical's charm left that would act or leak; return what went."""
        gone = []
        for path in (self.paths.canonical_cron, self.paths.canonical_clouds_yaml):
            if path.exists():
                path.unlink()
                gone.append(path)
        return gone

    def remove_cron(self) -> None:
        """Stop this unit's schedule (a standby unit does not build)."""
        self.cron_file.unlink(missing_ok=True)

    def write_cron(self, interval_hours: int) -> None:
        """Write the cron file that dispatches the charm's `run` event every interval."""
        # Spread units over the hour so several builders do not start at the same minute.
        minute = zlib.crc32(self.unit_name.encode()) % 60
        hours = f"*/{interval_hours}" if interval_hours < 24 else "0"
        # umask 027: the shell's `>>` creates cron.log, which cos-agent ships, 0640 like
        # build.log (BUILD_LOG_MODE).
        command = (
            "umask 027; "
            f"{self.paths.juju_exec} {self.unit_name} JUJU_DISPATCH_PATH=hooks/run ./dispatch"
            f" >> {self.paths.cron_log} 2>&1"
        )
        tab = CronTab(user=False)
        job = tab.new(command=command, user="root", comment=f"{self.unit_name} image build")
        job.setall(f"{minute} {hours} * * *")
        durable_files.write(self.cron_file, tab.render(), mode=0o644)


def apt_install(packages: list[str]) -> object:
    """Install Debian packages (the machine's package manager; tests pass a recorder)."""
    return apt.add_package(packages, update_cache=True)
