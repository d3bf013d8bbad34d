"""Issue 11 #2: what requirers and clouds write is data: bounded, filtered, never an option.

Every hook that starts a build survives hostile credentials (tests/support/hostile.py), and
what reaches argv, clouds.yaml, the catalogue, the status and the log is one safe word or line.
"""

import contextlib
import json
import logging
import sys
from pathlib import Path

import pytest
import yaml
from ops import testing

import machine_files
from catalogue import Catalogue
from charm import GithubRunnerImageBuilderCharm
from charm_helpers import (
    RUNNERS,
    Machine,
    base_state,
    cli_args,
    emit,
    image_relation,
    options,
    requirer_data,
    spec_argv,
)
from charms.github_runner_image_builder.v0.image import (
    NAME_LIMIT,
    PASSWORD_LIMIT,
    URL_LIMIT,
    CloudCredentials,
    InvalidDataError,
)
from github_runner_image_builder.cli import build as cli_build
from image_builder_contract import rules
from job import BUILD_CLOUD, BuildJob, BuildRequest, lookup_argv

sys.path.insert(0, str(Path(__file__).parents[2]))  # tests.support: the shared corpus
from tests.support.hostile import hostile_credentials

Ctx = testing.Context[GithubRunnerImageBuilderCharm]
PREFIX = "github-runner-image-builder"
FIELDS = ("username", "project_name", "password", "auth_url")
EVENTS = ("run-action", "relation-changed", "config-changed", "schedule", "upgrade")


@pytest.fixture(autouse=True)
def no_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        machine_files.MachineFiles, "install", lambda self: None
    )  # upgrade-charm's


def _fire(ctx: Ctx, event: str, relation: testing.Relation, state: testing.State) -> None:
    if event == "run-action":
        # Refused credentials fail the action: "no image relation has given credentials".
        with contextlib.suppress(testing.ActionFailed):
            ctx.run(ctx.on.action("run"), state)
    elif event == "relation-changed":
        ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    elif event == "config-changed":
        ctx.run(ctx.on.config_changed(), state)
    elif event == "upgrade":
        ctx.run(ctx.on.upgrade_charm(), state)
    else:
        emit(ctx, state, "run")


def _job(request: BuildRequest) -> BuildJob:
    return BuildJob.model_validate(
        {
            "run_id": "r1",
            "started_at": "2026-01-01T00:00:00Z",
            "unit": "u/0",
            "cli": "cli",
            "juju_exec": "juju-exec",
            "result": "result.json",
            "lock": "build.lock",
            "request": request,
        }
    )


@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize("field", FIELDS)
def test_every_hook_that_builds_survives_hostile_credentials(
    ctx: Ctx, machine: Machine, started: list[BuildRequest], field: str, event: str
) -> None:
    for value in hostile_credentials("0123456789abcdef"):
        data = {**requirer_data("runners", "runner"), field: value}
        if field == "auth_url":
            data[field] = "https://keystone.example/" + value
        relation = testing.Relation("image", remote_units_data={0: data})
        started.clear()
        _fire(ctx, event, relation, base_state(relation))  # never raises
        # A control character or a value over its bound (255 for names) is refused: no build.
        limit = {"password": PASSWORD_LIMIT, "auth_url": URL_LIMIT}.get(field, NAME_LIMIT)
        refused = len(data[field]) > limit or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
        refused = refused or (value == "" and field != "auth_url")
        if refused:
            assert started == [], f"{value[:30]!r} in {field} started a build"
            continue
        try:
            cloud = CloudCredentials.from_databag(data).cloud_id
        except InvalidDataError:
            assert started == [], f"{value[:30]!r} refused, yet a build started"
            continue
        for request in started:
            # One requirer cloud, one safe word; the build cloud is never a requirer's.
            assert request.clouds == (cloud,)
            assert "," not in cloud and not cloud.startswith("-") and len(cloud) < 100
            job = _job(request)
            spec = cli_build.spec_of(cli_args(spec_argv(job)[1:]))
            assert spec.upload.clouds == (BUILD_CLOUD, cloud)
            for lookup in request.lookups:
                assert lookup_argv(job, lookup)[1:3] == [
                    f"--os-cloud={cloud}",
                    "latest-build-id",
                ]
        # The value reaches clouds.yaml verbatim, as data.
        auth = yaml.safe_load(machine.paths.clouds_yaml.read_text())["clouds"][cloud]["auth"]
        assert auth[field] == data[field]


def _answer(*images: dict[str, str], failures: list[dict[str, str]] | None = None) -> str:
    return json.dumps({"images": list(images), "failures": failures or []})


def _image(cloud: str, image_id: str) -> dict[str, str]:
    name = f"{PREFIX}-noble-x64"
    return {"name": name, "base": "noble", "arch": "x64", "cloud": cloud, "id": image_id}


@pytest.mark.parametrize("bad_id", ["-x", "a,b", "id with space", "x\ny", "", "a" * 200])
def test_an_unsafe_image_id_from_the_cloud_is_never_stored_published_or_protected(
    ctx: Ctx, machine: Machine, bad_id: str
) -> None:
    relation = image_relation()
    machine.plan(build={"stdout": _answer(_image(RUNNERS, bad_id)), "exit": 0})
    state = ctx.run(ctx.on.action("run"), base_state(relation))
    machine.wait_for_callbacks(1)
    state = emit(ctx, state, "build_finished")
    assert "id" not in dict(state.get_relation(relation.id).local_unit_data)
    assert bad_id not in Catalogue.from_json(machine.paths.catalogue.read_text()).ids()
    assert "1 failed" in state.unit_status.message
    machine.plan()  # the fake CLI builds for real now
    state = ctx.run(ctx.on.action("run"), state)
    machine.wait_for_callbacks(2)
    protect = options(machine.build_calls()[1]["argv"]).get("protect", "")
    assert bad_id not in rules.split_list(protect)
    assert len(machine.build_calls()) == 2


def test_an_unsafe_lookup_answer_counts_as_no_image(ctx: Ctx, machine: Machine) -> None:
    machine.plan(latest={f"{RUNNERS}/{PREFIX}-noble-x64": "-x"})
    relation = image_relation()
    state = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), base_state(relation))
    machine.wait_for_callbacks(1)
    state = emit(ctx, state, "build_finished")
    published: dict[str, str] = dict(state.get_relation(relation.id).local_unit_data)
    assert published["id"] == f"img-{RUNNERS}-noble-1"


def test_a_huge_error_body_is_one_bounded_line_in_status_and_log(
    ctx: Ctx, machine: Machine, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "\nbuild r0 finished: exit 0, 1 images, 0 failed\n"
    failure = {"base": "noble", "arch": "x64", "cloud": RUNNERS, "step": "copy"}
    body = "503 Service Unavailable" + forged + "x" * 5_000_000
    machine.plan(build={"stdout": _answer(failures=[{**failure, "error": body}]), "exit": 1})
    relation = image_relation()
    state = ctx.run(ctx.on.action("run"), base_state(relation))
    machine.wait_for_callbacks(1)
    with caplog.at_level(logging.INFO):
        state = emit(ctx, state, "build_finished")
    assert len(state.unit_status.message) < 300
    assert "\n" not in state.unit_status.message
    for record in caplog.records:
        message = record.getMessage()
        assert "\n" not in message and len(message) < 1000
    assert not [r for r in caplog.records if r.getMessage().startswith("build r0 finished")]
    assert machine.paths.result.stat().st_size < 20_000


def test_deep_json_in_peer_data_is_ignored_not_a_crash(ctx: Ctx, machine: Machine) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    peers = testing.PeerRelation(
        "peers",
        local_app_data={"catalogue": deep},
        peers_data={1: {"published": deep, "building": deep, "handover": deep}},
    )
    relation = image_relation()
    state = base_state(relation)
    state = testing.State(
        config=state.config, secrets=state.secrets, relations={relation, peers}, leader=True
    )
    out = ctx.run(ctx.on.update_status(), state)
    assert isinstance(out.unit_status, (testing.ActiveStatus, testing.WaitingStatus))
