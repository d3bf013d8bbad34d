"""No result is ever lost and no state file can brick the unit (issue 11, items 6-10, 12, 13).

The charm runs under Scenario with the real detached runner and a fake CLI (charm_helpers);
a full disk is injected (full_disk.py).
"""

import dataclasses
import datetime
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from full_disk import FullDisk
from ops import testing

import job_launcher
import machine_files
import unit_paths
from catalogue import Catalogue
from charm import GithubRunnerImageBuilderCharm
from charm_helpers import (
    RUNNERS,
    SCRIPT_SECRET,
    UNIT,
    Machine,
    base_state,
    emit,
    image_relation,
    password_secret,
    request_spec,
    script_secret,
    valid_config,
    wait_until,
)
from config import ProxyConfig, load_config
from image_builder_contract.report import ImageResult
from job import BuildRequest, CleanJob, RunRecord, clean_argv

Ctx = testing.Context[GithubRunnerImageBuilderCharm]
CHARMCRAFT_YAML = Path(__file__).parents[2] / "charmcraft.yaml"
STARTED = datetime.datetime(2026, 11, 23, 14, 2, tzinfo=datetime.timezone.utc)


def _published_id(out: testing.State, relation: testing.Relation) -> str:
    data: dict[str, str] = dict(out.get_relation(relation.id).local_unit_data)
    return data.get("id", "")


def _built(ctx: Ctx, machine: Machine, relation: testing.Relation) -> testing.State:
    """Return the state after one build that was published (img-<cloud>-noble-1)."""
    out = ctx.run(ctx.on.action("run"), base_state(relation))
    machine.wait_for_callbacks(1)
    out = emit(ctx, out, "build_finished")
    assert _published_id(out, relation) == f"img-{RUNNERS}-noble-1"
    return out


def _cleanups(machine: Machine) -> list[list[str]]:
    calls = [c["argv"] for c in machine.cli_calls()]
    return [a for a in calls if a[1] == "clean" and any(w.startswith("--build-id=") for w in a)]


# --- 6. take the result first ----------------------------------------------------------------


def test_a_trigger_before_the_callback_publishes_the_finished_build_first(
    ctx: Ctx, machine: Machine
) -> None:
    relation = image_relation()
    out = ctx.run(ctx.on.action("run"), base_state(relation))
    machine.wait_for_callbacks(1)
    # The runner let the lock go; its juju-exec callback has not reached the charm yet when
    # the operator runs the action again.
    machine.plan(build={"wait": True})
    out = ctx.run(ctx.on.action("run"), out)
    assert ctx.action_results is not None and ctx.action_results["result"] == "started"
    assert _published_id(out, relation) == f"img-{RUNNERS}-noble-1"
    machine.wait_for_build_waiting()
    second = machine.build_specs()[1]
    assert second.prune.protect == {f"img-{RUNNERS}-noble-1"}  # never pruned
    machine.release()
    machine.wait_for_callbacks(2)
    out = emit(ctx, out, "build_finished")  # the first build's late callback, then the second's
    assert _published_id(out, relation) == f"img-{RUNNERS}-noble-2"


def test_a_build_start_with_a_result_waiting_queues_instead_of_overwriting_it(
    machine: Machine,
) -> None:
    b = job_launcher.JobLauncher(machine.paths, UNIT, {})
    request = BuildRequest(spec=request_spec())
    first = b.start(request)
    machine.wait_for_callbacks(1)
    again = b.start(request)  # no take_result in between
    assert (again.started, again.run_id) == (False, first.run_id)
    assert machine.paths.queued.exists()
    result = b.take_result()
    assert result is not None and result.run_id == first.run_id and result.images


# --- 8. a failed launch is not remembered ----------------------------------------------------


def test_a_failed_launch_is_forgotten_and_the_retried_hook_builds(
    ctx: Ctx, machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    relation = image_relation()
    broken = dataclasses.replace(machine.paths, runner_python=Path("/nonexistent/python3"))
    monkeypatch.setattr(unit_paths, "default_paths", lambda charm_dir, unit: broken)
    st = base_state(relation)
    with pytest.raises(testing.errors.UncaughtCharmError, match="FileNotFoundError"):
        ctx.run(ctx.on.config_changed(), st)
    assert not machine.paths.current.exists()
    assert not machine.paths.fingerprint.exists()
    assert not machine.paths.job.exists()  # its secrets do not stay either
    monkeypatch.setattr(unit_paths, "default_paths", lambda charm_dir, unit: machine.paths)
    out = ctx.run(ctx.on.update_status(), st)
    assert "killed or rebooted" not in out.unit_status.message
    ctx.run(ctx.on.config_changed(), st)  # Juju retries the hook
    machine.wait_for_callbacks(1)
    assert len(machine.build_calls()) == 1


def test_a_failed_systemd_launch_puts_the_last_build_back(machine: Machine) -> None:
    b = job_launcher.JobLauncher(machine.paths, UNIT, {})
    request = BuildRequest(
        spec=request_spec(),
        fingerprint="settings-1",
    )
    b.start(request)
    machine.wait_for_callbacks(1)
    assert b.take_result() is not None
    before = machine.paths.current.read_text()
    fail = machine.home / "bin" / "systemd-run"
    fail.write_text("#!/bin/sh\necho 'no bus' >&2\nexit 1\n")
    fail.chmod(0o755)
    broken = job_launcher.JobLauncher(
        dataclasses.replace(machine.paths, systemd_run=fail), UNIT, {}
    )
    with pytest.raises(RuntimeError, match="no bus"):
        broken.start(request.model_copy(update={"fingerprint": "settings-2"}))
    assert machine.paths.current.read_text() == before
    assert b.records.stored_fingerprint() == "settings-1"
    assert b.take_result() is None  # nothing new to report, no "killed or rebooted"


# --- 9. disk full ----------------------------------------------------------------------------


def test_a_full_disk_keeps_the_old_clouds_yaml_and_blocks_saying_so(
    ctx: Ctx, machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    relation = image_relation()
    out = _built(ctx, machine, relation)
    old = machine.paths.clouds_yaml.read_bytes()
    disk = FullDisk(machine.paths.state_dir, machine.home / "disk-full", monkeypatch)
    disk.fill()
    other = image_relation("alpha", "bot")
    out = ctx.run(
        ctx.on.relation_changed(other, remote_unit=0),
        dataclasses.replace(out, relations=out.relations | {other}),
    )
    assert any(name.startswith(".clouds.yaml.") for name in disk.refused)
    assert machine.paths.clouds_yaml.read_bytes() == old
    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert out.unit_status.message.startswith(
        f"cannot write clouds.yaml in {machine.paths.state_dir}: No space left on device; "
        "the previous file is kept and no build starts"
    )
    assert _published_id(out, relation) == f"img-{RUNNERS}-noble-1"
    assert len(machine.build_calls()) == 1  # nothing built from a stale clouds.yaml
    names = [p.name for p in machine.paths.state_dir.iterdir()]
    assert [n for n in names if n.startswith(".clouds.yaml.")] == []  # no temporary file left
    with pytest.raises(testing.ActionFailed, match=r"cannot write clouds\.yaml"):
        ctx.run(ctx.on.action("run"), out)
    # Space freed: the next hook writes it and the unit carries on.
    disk.flag.unlink()
    out = ctx.run(ctx.on.update_status(), out)
    assert isinstance(out.unit_status, testing.ActiveStatus)
    assert "alpha" in machine.paths.clouds_yaml.read_text()


def test_a_lost_result_on_a_full_disk_says_the_disk_is_full(
    machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = job_launcher.JobLauncher(machine.paths, UNIT, {})
    machine.paths.state_dir.mkdir(parents=True)
    run = RunRecord(run_id="r9", started_at=STARTED)
    machine.paths.current.write_text(run.model_dump_json())
    monkeypatch.setattr(shutil, "disk_usage", lambda _: type("U", (), {"free": 4096}))
    result = b.take_result()
    assert result is not None
    assert result.error == (
        f"{job_launcher.LOST}; the unit's disk is full "
        f"(4096 bytes free in {machine.paths.state_dir})"
    )


# --- 10. state files -------------------------------------------------------------------------

CORRUPT = {
    "empty": b"",
    "truncated": b'{"images": [{"cloud": "x", "ba',
    "wrong shape": b'{"a_u_1": []}',
    "a list": b"[1, 2]",
    "not UTF-8": b'{"images": "\xff\xfe"}',
    "too deep": b"[" * 100_000,
}


@pytest.mark.parametrize("content", CORRUPT.values(), ids=CORRUPT.keys())
def test_an_unreadable_catalogue_is_set_aside_and_recovered_from_the_published_data(
    ctx: Ctx, machine: Machine, content: bytes
) -> None:
    relation = image_relation()
    out = _built(ctx, machine, relation)
    machine.paths.catalogue.write_bytes(content)
    out = ctx.run(ctx.on.update_status(), out)
    (aside,) = machine.paths.state_dir.glob("images.json.corrupt-*")
    assert aside.read_bytes() == content  # kept for the operator
    catalogue = Catalogue.from_json(machine.paths.catalogue.read_text())
    recovered = catalogue.get(RUNNERS, "noble", "x64")
    assert recovered is not None and recovered.id == f"img-{RUNNERS}-noble-1"
    assert _published_id(out, relation) == f"img-{RUNNERS}-noble-1"
    assert out.unit_status.message.endswith(
        f"; unreadable state file set aside: {aside.name} (recovered)"
    )


def test_an_unreadable_catalogue_is_recovered_from_the_peer_data(
    ctx: Ctx, machine: Machine
) -> None:
    shared = Catalogue.from_built(
        [ImageResult(name="n", base="noble", arch="x64", cloud=RUNNERS, id="img-from-peers")],
        STARTED,
    )
    peer = testing.PeerRelation("peers", local_app_data={"catalogue": shared.to_json()})
    relation = image_relation()
    machine.paths.state_dir.mkdir(parents=True)
    machine.paths.catalogue.write_bytes(b'{"a_u_1": []}')
    st = dataclasses.replace(base_state(relation), relations=frozenset({relation, peer}))
    out = ctx.run(ctx.on.update_status(), st)
    assert Catalogue.from_json(machine.paths.catalogue.read_text()) == shared
    assert _published_id(out, relation) == "img-from-peers"


@pytest.mark.parametrize("name", ["result.json", "current.json", "handled", "fingerprint"])
@pytest.mark.parametrize("content", [b"\xff\xfe\x00", b"", b"{"], ids=["binary", "empty", "cut"])
def test_an_unreadable_record_breaks_no_hook(
    ctx: Ctx, machine: Machine, name: str, content: bytes
) -> None:
    relation = image_relation()
    out = _built(ctx, machine, relation)
    (machine.paths.state_dir / name).write_bytes(content)
    for event in (ctx.on.update_status(), ctx.on.config_changed()):
        out = ctx.run(event, out)
    assert _published_id(out, relation) == f"img-{RUNNERS}-noble-1"
    assert out.unit_status.name in ("active", "maintenance")


def test_a_state_file_that_is_a_folder_breaks_no_hook(ctx: Ctx, machine: Machine) -> None:
    relation = image_relation()
    out = _built(ctx, machine, relation)
    for path in (machine.paths.catalogue, machine.paths.result, machine.paths.lock):
        path.unlink()
        path.mkdir()
    out = ctx.run(ctx.on.update_status(), out)
    assert machine.paths.catalogue.is_file()  # set aside and written again
    assert _published_id(out, relation) == f"img-{RUNNERS}-noble-1"
    ctx.run(ctx.on.action("run"), out)  # the lock works again
    machine.wait_for_callbacks(2)
    assert len(machine.build_calls()) == 2


# --- 12. the fingerprint reveals nothing -----------------------------------------------------


def test_the_fingerprint_is_keyed_by_an_application_secret_and_reveals_no_script_secret(
    ctx: Ctx, machine: Machine
) -> None:
    password, script = password_secret(), script_secret()
    config = valid_config(password, **{"script-secret-id": script.id})
    peer = testing.PeerRelation("peers")
    relation = image_relation()
    st = testing.State(
        config=config, secrets={password, script}, relations={relation, peer}, leader=True
    )
    out = ctx.run(ctx.on.config_changed(), st)
    machine.wait_for_callbacks(1)
    stored = machine.paths.fingerprint.read_text()
    app_data: dict[str, str] = dict(out.get_relation(peer.id).local_app_data)
    shared = app_data["fingerprint"]
    assert stored == shared
    defaults = yaml.safe_load(CHARMCRAFT_YAML.read_text())["config"]["options"]
    full = {k: v["default"] for k, v in defaults.items() if "default" in v} | config
    contents = {password.id: password.tracked_content, script.id: script.tracked_content}
    loaded = load_config(full, contents.__getitem__, ProxyConfig(), "github-runner-image-builder")
    # The digest of earlier revisions, which anyone could recompute from a guess, is gone.
    assert stored != loaded.legacy_fingerprint()
    secret_digest = hashlib.sha256(json.dumps({"API_TOKEN": SCRIPT_SECRET}).encode()).hexdigest()
    (key,) = [s for s in out.secrets if s.label == "fingerprint-key"]
    assert key.tracked_content is not None
    key_text = str(key.tracked_content["key"])
    for path in machine.paths.state_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert key_text.encode() not in data and secret_digest.encode() not in data
    assert key_text not in json.dumps(dict(out.get_relation(peer.id).local_app_data))
    assert stored == loaded.fingerprint(key_text.encode())


def test_a_new_leader_compares_the_fingerprint_like_the_old_one(
    ctx: Ctx, machine: Machine
) -> None:
    relation = image_relation()
    peer = testing.PeerRelation("peers")
    st = dataclasses.replace(base_state(relation), relations=frozenset({relation, peer}))
    out = ctx.run(ctx.on.config_changed(), st)
    machine.wait_for_callbacks(1)
    out = emit(ctx, out, "build_finished")
    # Another unit becomes leader: its own state folder is empty, the peer data and the
    # application's key secret are shared.
    other = testing.Context(GithubRunnerImageBuilderCharm, unit_id=1)
    machine.paths.fingerprint.unlink()
    ctx_out = other.run(other.on.config_changed(), out)
    assert len(machine.build_calls()) == 1  # same settings: no rebuild
    assert ctx_out.unit_status.name == "active"


# --- 13. a dead build's resources go at once -------------------------------------------------


def test_every_build_is_tagged_with_its_id(ctx: Ctx, machine: Machine) -> None:
    ctx.run(ctx.on.action("run"), base_state(image_relation()))
    assert ctx.action_results is not None
    machine.wait_for_callbacks(1)
    (spec,) = machine.build_specs()
    assert spec.site.build_id == ctx.action_results["build-id"]


def test_a_build_found_dead_is_cleaned_up_by_its_id_at_once(ctx: Ctx, machine: Machine) -> None:
    relation = image_relation()
    out = _built(ctx, machine, relation)
    # A later build whose process vanished: current.json names it, no result does.
    current = json.loads(machine.paths.current.read_text())
    machine.paths.current.write_text(json.dumps({**current, "run_id": "vanished"}))
    out = ctx.run(ctx.on.update_status(), out)
    assert out.unit_status.message.endswith(f"failed: {job_launcher.LOST}")
    wait_until(lambda: len(_cleanups(machine)) > 0)
    assert _cleanups(machine) == [
        [
            "--os-cloud=builder",
            "clean",
            "--prefix=github-runner-image-builder",
            "--build-id=vanished",
        ]
    ]
    ctx.run(ctx.on.update_status(), out)
    assert len(_cleanups(machine)) == 1  # once


def test_the_cli_takes_the_build_id_options() -> None:
    """The contract with the CLI side (another branch of issue 11): `build --build-id` and
    `clean --build-id`. Runs once the CLI has them."""
    from charm_helpers import cli_knows
    from github_runner_image_builder.cli import build_parser

    if not (cli_knows("build", "--build-id") and cli_knows("clean", "--build-id")):
        pytest.skip("this CLI has no --build-id yet (the CLI side of issue 11)")
    job = CleanJob(build_id="r1", prefix="p", cli="cli")
    args = build_parser().parse_args(clean_argv(job)[1:])
    assert args.build_id == "r1"


def test_a_full_disk_at_the_start_of_a_build_fails_the_action_saying_so(
    ctx: Ctx, machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    relation = image_relation()
    out = _built(ctx, machine, relation)
    # clouds.yaml is already as it should be, so the first write refused is the build's own.
    monkeypatch.setattr(machine_files.MachineFiles, "write_clouds_yaml", lambda *a: None)
    disk = FullDisk(machine.paths.state_dir, machine.home / "disk-full", monkeypatch)
    disk.fill()
    with pytest.raises(testing.ActionFailed, match=r"cannot write current\.json"):
        ctx.run(ctx.on.action("run"), out)
    assert len(machine.build_calls()) == 1
    assert not [p for p in machine.paths.state_dir.iterdir() if p.name.startswith(".current")]
