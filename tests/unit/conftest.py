"""Shared fixtures of the charm unit tests (helpers live in charm_helpers.py)."""

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops import testing

# Test modules import charm_helpers from this folder (pytest runs with importlib mode).
sys.path.insert(0, str(Path(__file__).parent))

import job
import job_launcher
import machine_files
import metrics_service
import unit_paths
from charm import GithubRunnerImageBuilderCharm
from charm_helpers import Machine, build_running, new_machine, wait_until
from config import PROXY_SETTINGS

# charmcraft warns on every import without a private runtime directory.
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    got = new_machine(tmp_path / "machine")
    paths = got.paths
    monkeypatch.setattr(unit_paths, "default_paths", lambda charm_dir, unit: paths)
    monkeypatch.setattr(machine_files, "apt_install", got.apt_calls.append)
    _fake_systemd(got.home, monkeypatch)
    for name in PROXY_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    yield got
    # Never leave a build behind: release a waiting fake CLI and wait for the lock to free.
    got.release()
    wait_until(lambda: not build_running(paths))


def _fake_systemd(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit files go to <home>/systemd; each systemctl call is a line of <home>/systemctl.log."""
    log = home / "systemctl.log"

    def call(*args: str) -> None:
        with log.open("a") as file:
            file.write(" ".join(args) + "\n")

    real = metrics_service.ServiceManager
    monkeypatch.setattr(metrics_service, "UNIT_DIR", home / "systemd")
    monkeypatch.setattr(
        metrics_service,
        "ServiceManager",
        lambda: real(
            daemon_reload=lambda: call("daemon-reload"),
            enable=lambda name: call("enable", name),
            restart=lambda name: call("restart", name),
            stop=lambda name: call("stop", name),
            disable=lambda name: call("disable", name),
        ),
    )


@pytest.fixture
def ctx() -> testing.Context[GithubRunnerImageBuilderCharm]:
    return testing.Context(GithubRunnerImageBuilderCharm, unit_id=0)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[job.BuildRequest]:
    """Record the build requests the charm starts instead of launching the runner."""
    requests: list[job.BuildRequest] = []

    def start(
        self: job_launcher.JobLauncher, request: job.BuildRequest
    ) -> job_launcher.StartOutcome:
        requests.append(request)
        return job_launcher.StartOutcome(started=True, run_id="r1")

    monkeypatch.setattr(job_launcher.JobLauncher, "start", start)
    return requests
