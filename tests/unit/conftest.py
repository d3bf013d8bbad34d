"""Shared fixtures of the charm unit tests (helpers live in charm_helpers.py)."""

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops import testing

# Test modules import charm_helpers from this folder (pytest runs with importlib mode).
sys.path.insert(0, str(Path(__file__).parent))

import builder
import metrics_service
import state
from charm import GithubRunnerImageBuilderCharm
from charm_helpers import (
    FAKE_CLI,
    FAKE_JUJU_EXEC,
    SRC,
    Machine,
    build_running,
    script,
    wait_until,
)

# charmcraft warns on every import without a private runtime directory.
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    home = tmp_path / "machine"
    home.mkdir()
    paths = builder.Paths.under(home, runner=SRC / "build_runner.py")
    script(paths.cli, FAKE_CLI.format(python=sys.executable, home=str(home)))
    script(paths.juju_exec, FAKE_JUJU_EXEC.format(python=sys.executable, home=str(home)))
    apt_calls: list[list[str]] = []
    monkeypatch.setattr(builder, "default_paths", lambda charm_dir, unit: paths)
    monkeypatch.setattr(builder, "apt_install", apt_calls.append)
    _fake_systemd(home, monkeypatch)
    for name in state.PROXY_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    got = Machine(home=home, paths=paths, apt_calls=apt_calls)
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
