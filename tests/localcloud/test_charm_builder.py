"""The charm's job launcher against the local cloud: a real detached build, end to end.

The charm runs under Scenario with only its machine paths moved into a temporary folder
(`unit_paths.default_paths` is patched). Everything below the charm is real: job_launcher.py
launches src/job_runner.py detached, the runner runs the installed CLI against the local OpenStack,
writes the result and calls "juju-exec" — a recorder here, since there is no Juju; the test then
dispatches the `build_finished` event into the charm itself, as juju-exec would.

Two stand-ins, both at the machine's edge: juju-exec (above), and the unit's route to
cloud-images.ubuntu.com — the CLI's console script in the unit's venv is a two-line wrapper that
adds `--cloud-images-url <loopback mirror>` to `build` and otherwise runs the real CLI unchanged.
"""

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ops import testing

import job
import job_launcher
import unit_paths
from charm import GithubRunnerImageBuilderCharm
from charms.github_runner_image_builder.v0.image import CloudCredentials
from config import PROXY_SETTINGS
from lcloud import builds, cli, guest, mirror
from lcloud.cloud import LocalCloud

SRC = Path(__file__).parents[2] / "src"
APP = "github-runner-image-builder"
UNIT = f"{APP}/0"
SCRIPT_SECRET = "script-token-5be0c7a1"  # noqa: S105 - a test value checked never to leak
RUNNER_VERSION = "2.321.0"
BUILD_LIMIT = 300.0  # seconds a build may take here before the test gives up (not asserted)
IMAGE_NAME = f"{APP}-noble-x64"

# The real juju-exec would run the charm's dispatch; this one records how it was called.
FAKE_JUJU_EXEC = """#!{python}
import json, os, sys
with open({calls!r}, "a") as calls:
    calls.write(json.dumps({{"argv": sys.argv[1:], "env": dict(os.environ)}}) + "\\n")
"""

CLI_WRAPPER = """#!/bin/sh
# The unit's route to cloud-images.ubuntu.com: builds read the loopback mirror instead.
# The charm writes every option as --flag=value, so the command is the only bare `build`.
{drop_build_id}
for arg in "$@"; do
    if [ "$arg" = build ]; then exec {cli} "$@" --cloud-images-url={url}; fi
done
exec {cli} "$@"
"""

# Until the CLI side of issue 11 (another branch) adds `--build-id`, the wrapper leaves it out.
DROP_BUILD_ID = (
    'for arg do shift; case "$arg" in --build-id=*) ;; *) set -- "$@" "$arg" ;; esac; done'
)

Ctx = testing.Context[GithubRunnerImageBuilderCharm]


def _cli_knows_build_id() -> bool:
    from github_runner_image_builder.cli import build_parser

    _, unknown = build_parser().parse_known_args(["--os-cloud=c", "build", "--build-id=x"])
    return "--build-id=x" not in unknown


class Machine:
    """The unit's machine in a temporary folder: the charm's paths and what juju-exec saw."""

    def __init__(self, home: Path, mirror_url: str, base_sha256: str) -> None:
        self.home = home
        self.base_sha256 = base_sha256  # of the mirror's noble image: every build boots it
        self.calls = home / "juju-exec-calls.jsonl"
        self.paths = unit_paths.Paths.under(home, runner=SRC / "job_runner.py")
        real_cli = cli.find_cli()  # the CLI installed in this environment (-e ./app)
        drop = "" if _cli_knows_build_id() else DROP_BUILD_ID
        wrapper = CLI_WRAPPER.format(cli=real_cli, url=mirror_url, drop_build_id=drop)
        _script(self.paths.cli, wrapper)
        recorder = FAKE_JUJU_EXEC.format(python=sys.executable, calls=str(self.calls))
        _script(self.paths.juju_exec, recorder)
        self.launcher = job_launcher.JobLauncher(self.paths, UNIT, {})

    def juju_exec_calls(self) -> list[dict[str, Any]]:
        lines = self.calls.read_text().splitlines() if self.calls.exists() else []
        return [json.loads(line) for line in lines]

    def wait_for_result(self, run_id: str) -> job.BuildResult:
        """Wait (bounded) until the runner has recorded this build's result and let go."""
        deadline = time.monotonic() + BUILD_LIMIT
        while True:
            state = self.launcher.builds_now()
            if not state.running and state.last_result and state.last_result.run_id == run_id:
                return state.last_result
            if time.monotonic() > deadline:
                tail = self.paths.build_log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"build {run_id} did not finish; build log tail:\n{tail}")
            time.sleep(0.5)

    def wait_for_callbacks(self, count: int) -> list[dict[str, Any]]:
        """Wait (bounded) for the runner's juju-exec calls: it calls after releasing the lock."""
        deadline = time.monotonic() + 60
        while len(calls := self.juju_exec_calls()) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        return calls

    def wait_idle(self, limit: float) -> bool:
        deadline = time.monotonic() + limit
        while self.launcher.is_running():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True


def _script(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def machine(
    cloud: LocalCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Machine]:
    with mirror.serve(tmp_path / "mirror") as images:
        sha256 = images.publish("noble", "amd64")
        got = Machine(tmp_path / "machine", images.url, sha256)
        monkeypatch.setattr(unit_paths, "default_paths", lambda charm_dir, unit: got.paths)
        for name in PROXY_SETTINGS:
            monkeypatch.delenv(name, raising=False)
        yield got
        # Never leave a build behind: a failed test lets the build end, or stops it.
        if not got.wait_idle(60):
            stopped = _stop_build(got.paths.lock)
            pytest.fail(f"build processes {stopped} outlived the test; see {got.paths.build_log}")


def _stop_build(lock: Path) -> list[int]:
    """Stop the build this test started: the runner holding `lock`, then its CLI; return pids."""
    runners = [
        int(fd.parts[2])
        for fd in Path("/proc").glob("[0-9]*/fd/*")
        if _points_at(fd, lock) and fd.parts[2] != str(os.getpid())
    ]
    stopped = []
    for runner in set(runners):
        children = Path(f"/proc/{runner}/task/{runner}/children")
        with contextlib.suppress(OSError):
            for pid in [runner, *map(int, children.read_text().split())]:
                os.kill(pid, signal.SIGKILL)
                stopped.append(pid)
    return stopped


def _points_at(fd: Path, target: Path) -> bool:
    try:
        return fd.readlink() == target
    except OSError:  # the process or descriptor went away meanwhile
        return False


def _auth(cloud: LocalCloud, name: str) -> dict[str, str]:
    """Return one account's auth block exactly as the local cloud's clouds.yaml has it."""
    auth: dict[str, str] = yaml.safe_load(cloud.clouds_yaml.read_text())["clouds"][name]["auth"]
    return auth


def _cloud_id(cloud: LocalCloud, name: str) -> str:
    """Return the id the charm gives a requirer cloud with this account's credentials."""
    return CloudCredentials.from_databag(_auth(cloud, name)).cloud_id


def _charm_state(
    cloud: LocalCloud, *requirers: str
) -> tuple[testing.State, list[testing.Relation]]:
    """Return the charm's state: the build cloud in config, one relation per requirer cloud."""
    build = _auth(cloud, LocalCloud.BUILD)
    password = testing.Secret(tracked_content={"password": build["password"]})
    script = testing.Secret(tracked_content={"api-token": SCRIPT_SECRET})
    config: dict[str, str | int] = {
        "openstack-auth-url": build["auth_url"],
        "openstack-password-secret": password.id,
        "openstack-project-domain-name": build["project_domain_name"],
        "openstack-project-name": build["project_name"],
        "openstack-user-domain-name": build["user_domain_name"],
        "openstack-user-name": build["username"],
        "runner-version": RUNNER_VERSION,
        "script-url": "https://scripts.example/setup.sh",
        "script-secret-id": script.id,
    }
    relations = [
        testing.Relation("image", remote_units_data={0: _auth(cloud, name)}) for name in requirers
    ]
    state = testing.State(
        config=config, secrets={password, script}, relations=set(relations), leader=True
    )
    return state, relations


def _emit(ctx: Ctx, state: testing.State, name: str) -> testing.State:
    """Run a custom event (`build_finished`) as its own dispatch, as juju-exec brings it."""
    # Scenario cannot target charm.on's custom events; `start` is not observed by the charm.
    with ctx(ctx.on.start(), state) as manager:
        getattr(manager.charm.on, name).emit()
        out: testing.State = manager.run()
        return out


def _published(state: testing.State, relation: testing.Relation) -> dict[str, str]:
    data: dict[str, str] = dict(state.get_relation(relation.id).local_unit_data)
    return {k: data[k] for k in ("id", "tags", "images") if k in data}


def _secrets(cloud: LocalCloud) -> list[str]:
    return [SCRIPT_SECRET, *(account.password for account in cloud.accounts.values())]


def _check_callback(machine: Machine, cloud: LocalCloud, count: int) -> None:
    """The runner called juju-exec once per build, for build-finished, with no secret."""
    calls = machine.wait_for_callbacks(count)
    assert len(calls) == count
    call = calls[-1]
    assert call["argv"] == [UNIT, "JUJU_DISPATCH_PATH=hooks/build-finished", "./dispatch"]
    assert not [k for k in call["env"] if k.startswith(job.SECRET_ENV_PREFIX)]
    seen = json.dumps(call)
    assert not [secret for secret in _secrets(cloud) if secret in seen]


def _check_active_images(
    cloud: LocalCloud, published: dict[str, str], account: str, base_sha256: str
) -> None:
    """The published IDs are active images of this build in the requirer's own project."""
    conn = cloud.connect(account)
    entries = json.loads(published["images"])
    assert entries == [{"id": published["id"], "tags": "x64,noble"}]
    assert published["tags"] == "x64,noble"
    image = conn.image.get_image(published["id"])
    assert image.status == "active"
    assert image.owner == conn.current_project_id
    assert image.name == IMAGE_NAME
    assert (image.architecture, image.os_distro, image.os_version) == ("x86_64", "ubuntu", "24.04")
    assert image.properties["grib_runner_version"] == RUNNER_VERSION
    assert image.properties["grib_base"] == "noble"
    # It booted and passed its checks before it was copied here.
    assert image.properties["grib_verified"] == "true"
    assert image.properties["grib_sw_runner"] == RUNNER_VERSION
    # The bytes are a snapshot of a builder booted from the mirror's noble image.
    assert builds.payload(conn, image)["base_image_sha256"] == base_sha256


def _leftovers(cloud: LocalCloud) -> list[str]:
    """Return builder servers and security groups any project still has."""
    admin = cloud.connect()
    servers = [s.name for s in admin.compute.servers(all_projects=True)]
    groups = [g.name for g in admin.network.security_groups()]
    return [name for name in servers + groups if name.startswith(APP)]


def test_charm_builds_publishes_queues_and_keeps_images_on_failure(
    cloud: LocalCloud, machine: Machine
) -> None:
    ctx: Ctx = testing.Context(GithubRunnerImageBuilderCharm, unit_id=0)
    state, (rel_a, rel_b) = _charm_state(cloud, LocalCloud.RUNNER_A, LocalCloud.RUNNER_B)
    mirror_sha = machine.base_sha256

    # 1. The run action starts a detached build and answers at once.
    state = ctx.run(ctx.on.action("run"), state)
    assert ctx.action_results is not None
    assert ctx.action_results["result"] == "started"
    first = str(ctx.action_results["build-id"])
    written = yaml.safe_load(machine.paths.clouds_yaml.read_text())["clouds"]
    ids = {_cloud_id(cloud, name) for name in (LocalCloud.RUNNER_A, LocalCloud.RUNNER_B)}
    assert set(written) == {job.BUILD_CLOUD, *ids}
    assert machine.paths.clouds_yaml.stat().st_mode & 0o077 == 0

    # 2. A second trigger while it runs is queued, not started: the same build is reported.
    state = ctx.run(ctx.on.action("run"), state)
    assert ctx.action_results["result"] == "queued"
    assert ctx.action_results["build-id"] == first
    build_state = machine.launcher.builds_now()
    assert build_state.queued and build_state.current is not None
    assert build_state.current.run_id == first

    # 3. The build ends: one image per requirer cloud, recorded, and the callback made.
    result = machine.wait_for_result(first)
    assert result.error == "" and result.failures == [] and result.exit_code == 0
    # The build cloud keeps its copy too: the source of later `copy` jobs.
    assert {i.cloud for i in result.images} == {job.BUILD_CLOUD, *ids}
    served = {i.id for i in result.images if i.cloud != job.BUILD_CLOUD}
    _check_callback(machine, cloud, 1)

    # The queued rebuild's image will fail its verification: docker does not start.
    cloud.guests(
        [
            guest.GuestScript(
                match=APP, verify="fail", verify_failures={"docker": "daemon not active"}
            )
        ]
    )

    # 4. build_finished publishes each requirer's own image and starts the queued rebuild.
    state = _emit(ctx, state, "build_finished")
    published = {rel.id: _published(state, rel) for rel in (rel_a, rel_b)}
    _check_active_images(cloud, published[rel_a.id], LocalCloud.RUNNER_A, mirror_sha)
    _check_active_images(cloud, published[rel_b.id], LocalCloud.RUNNER_B, mirror_sha)
    assert published[rel_a.id]["id"] != published[rel_b.id]["id"]
    assert {published[r.id]["id"] for r in (rel_a, rel_b)} == served
    rebuild = machine.launcher.builds_now()
    assert rebuild.current is not None and rebuild.current.run_id != first
    assert not rebuild.queued
    second = rebuild.current.run_id

    # 5. The rebuild's image fails verification: the result names the check, nothing was
    # copied, the new image is gone and the published data stays.
    failed = machine.wait_for_result(second)
    _check_callback(machine, cloud, 2)
    assert failed.images == [] and failed.exit_code == 1
    assert [(f.base, f.arch, f.step) for f in failed.failures] == [("noble", "x64", "verify")]
    assert failed.failures[0].error == "docker: daemon not active"
    state = _emit(ctx, state, "build_finished")
    assert {rel.id: _published(state, rel) for rel in (rel_a, rel_b)} == published
    assert isinstance(state.unit_status, testing.ActiveStatus)
    assert state.unit_status.message.endswith(
        " UTC: noble/x64 failed verify: docker: daemon not active"
    )
    # Every cloud keeps the first build's image only (the build cloud's: for later copies).
    for account in (LocalCloud.BUILD, LocalCloud.RUNNER_A, LocalCloud.RUNNER_B):
        names = [i.name for i in cloud.connect(account).image.images() if i.name == IMAGE_NAME]
        assert len(names) == 1, account
    _check_active_images(cloud, published[rel_a.id], LocalCloud.RUNNER_A, mirror_sha)

    # 6. The rebuild was told to protect what is published, and nothing was left behind.
    log = machine.paths.build_log.read_text(errors="replace")
    spec = json.loads(log.split(f"build {second} spec: ", 1)[1].splitlines()[0])
    assert set(spec["prune"]["protect"]) == served
    assert not [secret for secret in _secrets(cloud) if secret in log]
    assert _leftovers(cloud) == []
    assert not machine.launcher.is_running()


def test_new_requirer_gets_existing_images_without_a_build(
    cloud: LocalCloud, machine: Machine, tmp_path: Path
) -> None:
    """A requirer whose cloud already has our image (e.g. after a redeploy) gets it looked up."""
    ctx: Ctx = testing.Context(GithubRunnerImageBuilderCharm, unit_id=0)
    conn = cloud.connect(LocalCloud.RUNNER_B)
    path = builds.fake_cloud_image(tmp_path / "earlier.qcow2", "noble", "amd64")
    earlier = builds.upload_base(conn, IMAGE_NAME, path)  # newer than any image built before
    spawned = len(cloud.events())
    state, (rel_b,) = _charm_state(cloud, LocalCloud.RUNNER_B)

    state = ctx.run(ctx.on.relation_changed(rel_b, remote_unit=0), state)
    current = machine.launcher.builds_now().current
    runner_b = _cloud_id(cloud, LocalCloud.RUNNER_B)
    assert current is not None and current.clouds == [runner_b]
    result = machine.wait_for_result(current.run_id)
    _check_callback(machine, cloud, 1)
    assert result.kind == "lookup" and result.error == ""
    assert [(i.cloud, i.base, i.arch, i.id) for i in result.images] == [
        (runner_b, "noble", "x64", earlier.id)
    ]

    state = _emit(ctx, state, "build_finished")
    assert _published(state, rel_b) == {
        "id": earlier.id,
        "tags": "x64,noble",
        "images": json.dumps([{"id": earlier.id, "tags": "x64,noble"}], separators=(",", ":")),
    }
    assert isinstance(state.unit_status, testing.ActiveStatus)
    assert state.unit_status.message.startswith("Found 1 existing image ")
    assert len(cloud.events()) == spawned  # no builder server was booted
    conn.image.delete_image(earlier)
