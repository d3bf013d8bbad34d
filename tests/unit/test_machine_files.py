"""What the charm writes on the machine: venv, logrotate, clouds.yaml, cron."""

import base64
import hashlib
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml
from crontab import CronTab
from ops import testing

import unit_paths
from charm import GithubRunnerImageBuilderCharm
from charm_helpers import (
    ALPHA,
    BETA,
    PASSWORD,
    REQUIRER_PASSWORD,
    UNIT,
    Machine,
    base_state,
    image_relation,
    requirer_data,
)

Ctx = testing.Context[GithubRunnerImageBuilderCharm]


def _make_wheel(folder: Path) -> Path:
    """Write a minimal wheel of `github-runner-image-builder` whose console script prints 'ok'."""
    name, version = "github_runner_image_builder", "0.1.0"
    dist_info = f"{name}-{version}.dist-info"
    files = {
        "fakecli.py": "def main():\n    print('fake cli ok')\n",
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: github-runner-image-builder\nVersion: {version}\n"
        ),
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{dist_info}/entry_points.txt": (
            "[console_scripts]\ngithub-runner-image-builder = fakecli:main\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel


def test_install_builds_the_venv_from_shipped_wheels_only(
    ctx: Ctx, machine: Machine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    venv = tmp_path / "real-venv"
    paths = unit_paths.Paths(**{**machine.paths.__dict__, "venv": venv})
    monkeypatch.setattr(unit_paths, "default_paths", lambda charm_dir, unit: paths)
    _make_wheel(paths.wheels)
    # pip must not reach any index: an unroutable one makes a lookup fail loudly.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")

    ctx.run(ctx.on.install(), base_state())

    assert machine.apt_calls == [["python3-venv", "cron", "logrotate"]]
    done = subprocess.run([str(paths.cli)], capture_output=True, text=True, check=True)
    assert done.stdout == "fake cli ok\n"
    assert stat.S_IMODE(paths.state_dir.stat().st_mode) == 0o700
    rotate = (paths.logrotate_dir / UNIT.replace("/", "-")).read_text()
    assert rotate.startswith(f"{paths.log_dir}/*.log {{\n")
    assert "copytruncate" in rotate
    # Running it again (upgrade-charm) is harmless.
    ctx.run(ctx.on.upgrade_charm(), base_state())
    assert subprocess.run([str(paths.cli)], capture_output=True, check=True).returncode == 0


def test_install_without_wheels_fails_loudly(ctx: Ctx, machine: Machine) -> None:
    with pytest.raises(testing.errors.UncaughtCharmError, match="no CLI wheels in"):
        ctx.run(ctx.on.install(), base_state())


def _clouds(machine: Machine) -> dict[str, dict[str, object]]:
    data: dict[str, dict[str, dict[str, object]]] = yaml.safe_load(
        machine.paths.clouds_yaml.read_text()
    )
    return data["clouds"]


def test_clouds_yaml_holds_the_build_cloud_only_before_any_relation(
    ctx: Ctx, machine: Machine
) -> None:
    ctx.run(ctx.on.config_changed(), base_state())
    assert stat.S_IMODE(machine.paths.clouds_yaml.stat().st_mode) == 0o600
    assert _clouds(machine) == {
        "builder": {
            "auth": {
                "auth_url": "https://keystone.build:5000/v3",
                "password": PASSWORD,
                "project_domain_name": "Default",
                "project_name": "builds",
                "user_domain_name": "Default",
                "username": "builder",
            },
            "identity_api_version": 3,
            "interface": "public",
        }
    }


def test_clouds_yaml_has_one_entry_per_requirer_cloud(ctx: Ctx, machine: Machine) -> None:
    machine.plan(latest={})
    first, second = image_relation("alpha", "bot"), image_relation("beta", "bot")
    # A third relation with the same credentials as the first shares its cloud.
    same = image_relation("alpha", "bot")
    ctx.run(ctx.on.config_changed(), base_state(first, second, same))
    clouds = _clouds(machine)
    assert sorted(clouds) == [ALPHA, BETA, "builder"]
    expected = dict(requirer_data("beta", "bot"))
    assert clouds[BETA]["auth"] == expected
    assert expected["password"] == REQUIRER_PASSWORD
    assert stat.S_IMODE(machine.paths.clouds_yaml.stat().st_mode) == 0o600


def test_departed_requirer_cloud_is_dropped_from_clouds_yaml(ctx: Ctx, machine: Machine) -> None:
    first, second = image_relation("alpha", "bot"), image_relation("beta", "bot")
    state = ctx.run(ctx.on.config_changed(), base_state(first, second))
    assert BETA in _clouds(machine)
    ctx.run(ctx.on.relation_broken(state.get_relation(second.id)), state)
    assert sorted(_clouds(machine)) == [ALPHA, "builder"]


@pytest.mark.parametrize(("interval", "hours"), [(1, "*"), (6, "*/6"), (7, "*/7"), (24, "0")])
def test_cron_entry_per_build_interval(
    ctx: Ctx, machine: Machine, interval: int, hours: str
) -> None:
    ctx.run(ctx.on.config_changed(), base_state(**{"build-interval": interval}))
    cron_file = machine.paths.cron_dir / "github-runner-image-builder-0"
    assert stat.S_IMODE(cron_file.stat().st_mode) == 0o644
    jobs = list(CronTab(tabfile=str(cron_file), user=False))
    assert len(jobs) == 1
    job = jobs[0]
    assert job.user == "root"
    assert job.command == (
        f"umask 027; {machine.paths.juju_exec} {UNIT} JUJU_DISPATCH_PATH=hooks/run ./dispatch"
        f" >> {machine.paths.log_dir}/cron.log 2>&1"
    )
    minute, hour, *rest = str(job.slices).split()
    assert 0 <= int(minute) < 60
    assert hour == hours
    assert rest == ["*", "*", "*"]


def test_cron_interval_change_rewrites_the_single_entry(ctx: Ctx, machine: Machine) -> None:
    state = ctx.run(ctx.on.config_changed(), base_state(**{"build-interval": 3}))
    ctx.run(ctx.on.config_changed(), base_state(**{"build-interval": 12}))
    del state
    cron_file = machine.paths.cron_dir / "github-runner-image-builder-0"
    jobs = list(CronTab(tabfile=str(cron_file), user=False))
    assert [str(j.slices).split()[1] for j in jobs] == ["*/12"]


def test_the_cron_log_is_created_for_owner_and_group_only(ctx: Ctx, machine: Machine) -> None:
    ctx.run(ctx.on.config_changed(), base_state())
    cron_file = machine.paths.cron_dir / "github-runner-image-builder-0"
    [job] = list(CronTab(tabfile=str(cron_file), user=False))
    machine.paths.log_dir.mkdir(parents=True, exist_ok=True)
    # As cron runs it: /bin/sh with cron's usual umask 022.
    subprocess.run(["/bin/sh", "-c", f"umask 022; {job.command}"], check=False)
    assert stat.S_IMODE((machine.paths.log_dir / "cron.log").stat().st_mode) == 0o640
