"""The charm's side of the metrics: the systemd service, the history it folds, the scrape job.

Install and upgrade-charm write the unit file, enable it (so it starts again after a reboot)
and restart it (so it runs the new charm's code). At the end of every hook the newest build
result and the number of requirer clouds are folded into the history (src/metrics.py), which
the exporter reads; folding is idempotent, so a result seen by several hooks counts once.
"""

import dataclasses
import datetime
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import ops
from charmlibs import systemd

import metrics
from job_records import JobRecords

logger = logging.getLogger(__name__)

EXPORTER = "metrics_exporter.py"
UNIT_DIR = Path("/etc/systemd/system")


@dataclasses.dataclass(frozen=True)
class ServiceManager:
    """systemctl, as a value tests can replace."""

    daemon_reload: Callable[[], object] = systemd.daemon_reload
    enable: Callable[[str], object] = systemd.service_enable
    restart: Callable[[str], object] = systemd.service_restart
    stop: Callable[[str], object] = systemd.service_stop
    disable: Callable[[str], object] = systemd.service_disable


def service_name(unit_name: str) -> str:
    """Return the unit's metrics service name (one per unit, like its cron and log files)."""
    return f"{unit_name.replace('/', '-')}-metrics.service"


def charm_import_path(charm_dir: Path, sys_path: Sequence[str], cwd: Path) -> list[str]:
    """Return the hook's import path inside the charm folder, absolute, plus src and lib.

    Juju's dispatch runs the charm from its folder with relative entries (`PYTHONPATH=lib:venv`);
    the service starts elsewhere, so they are made absolute against the hook's folder.
    """
    root = charm_dir.resolve()
    found: list[str] = []
    for entry in sys_path:
        path = (cwd / entry).resolve() if entry else None
        if path is not None and path.is_relative_to(root) and str(path) not in found:
            found.append(str(path))
    for folder in ("src", "lib"):
        if str(root / folder) not in found:
            found.append(str(root / folder))
    return found


def unit_file(
    charm_dir: Path, unit_name: str, python: Path, python_path: Sequence[str], port: int
) -> str:
    """Return the systemd unit that runs the exporter with the charm's interpreter and path.

    Root, since the records live in the charm's 0700 state folder, but with no capabilities, a
    read-only view of the system, no new privileges and loopback only.
    """
    exec_start = " ".join(
        [
            str(python),
            str(charm_dir / "src" / EXPORTER),
            "--charm-dir",
            str(charm_dir),
            "--unit",
            unit_name,
            "--address",
            "127.0.0.1",
            "--port",
            str(port),
        ]
    )
    return (
        "[Unit]\n"
        f"Description=Build metrics of {unit_name} (github-runner-image-builder)\n"
        "After=network.target\n\n"
        "[Service]\n"
        f"Environment=PYTHONPATH={':'.join(python_path)}\n"
        f"ExecStart={exec_start}\n"
        "Restart=always\n"
        "RestartSec=5\n"
        "NoNewPrivileges=yes\n"
        "CapabilityBoundingSet=\n"
        "ProtectSystem=strict\n"
        "ProtectHome=yes\n"
        "PrivateTmp=yes\n"
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def scrape_jobs(port: int = metrics.PORT) -> list[dict[str, object]]:
    """Return the cos-agent scrape job: the collector on this machine scrapes the loopback port."""
    return [
        {
            "job_name": "github_runner_image_builder",
            "metrics_path": "/metrics",
            "static_configs": [{"targets": [f"localhost:{port}"]}],
        }
    ]


class MetricsService(ops.Object):
    """Installs the exporter service and keeps the history it reads up to date."""

    def __init__(
        self,
        charm: ops.CharmBase,
        records: JobRecords,
        requirer_clouds: Callable[[], Mapping[str, object]],
        build_interval: Callable[[], int | None],
    ) -> None:
        super().__init__(charm, "metrics")
        self._charm = charm
        # Read-only, as the exporter reads them: the charm's handlers repair the records.
        self._records = records.read_only()
        self._requirer_clouds = requirer_clouds
        self._build_interval = build_interval
        self._systemctl = ServiceManager()
        charm.framework.observe(charm.on.install, self._install)
        charm.framework.observe(charm.on.upgrade_charm, self._install)
        charm.framework.observe(charm.on.remove, self._remove)
        # collect-status ends every dispatch (hooks, actions, the runner's callback): the one
        # moment after the charm has handled a finished build, whatever event brought it.
        charm.framework.observe(charm.on.collect_unit_status, self._record)

    @property
    def name(self) -> str:
        """Return the systemd service's name."""
        return service_name(self._charm.unit.name)

    def _install(self, _: ops.EventBase) -> None:
        charm_dir = self._charm.charm_dir
        # The hook's own import path within the charm (src, lib, its venv): the service then
        # imports exactly what the charm does.
        python_path = charm_import_path(charm_dir, sys.path, Path.cwd())
        text = unit_file(
            charm_dir, self._charm.unit.name, Path(sys.executable), python_path, metrics.PORT
        )
        path = UNIT_DIR / self.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o644)
        try:
            self._systemctl.daemon_reload()
            self._systemctl.enable(self.name)
            self._systemctl.restart(self.name)
        except (systemd.SystemdError, OSError) as error:
            # Metrics are not worth failing an install or an upgrade for; the log says why.
            logger.error("metrics service %s did not start: %s", self.name, error)

    def _remove(self, _: ops.EventBase) -> None:
        path = UNIT_DIR / self.name
        try:
            self._systemctl.stop(self.name)
            self._systemctl.disable(self.name)
        except (systemd.SystemdError, OSError) as error:
            logger.error("metrics service %s did not stop: %s", self.name, error)
        path.unlink(missing_ok=True)
        try:
            self._systemctl.daemon_reload()
        except (systemd.SystemdError, OSError) as error:
            logger.error("systemd daemon-reload failed: %s", error)

    def _record(self, _: ops.EventBase) -> None:
        try:
            self._fold_newest()
        except (OSError, ValueError) as error:
            # Figures are not worth failing a hook for: the next hook tries again.
            logger.error("build figures not recorded: %s", error)

    def _fold_newest(self) -> None:
        paths = self._records.paths
        if not paths.state_dir.is_dir():
            return  # before install: nothing to record
        before = metrics.load_history(paths.state_dir)
        records = metrics.read_records(self._records)
        history = before
        if records.last_result is not None:
            served = {i for ids in records.catalogue.values() for i in ids.values()}
            history = history.fold(records.last_result, served)
        history = history.with_requirers(
            len(self._requirer_clouds()),
            self._build_interval(),
            datetime.datetime.now(datetime.timezone.utc),
        )
        if history != before:
            metrics.save_history(paths.state_dir, history)
