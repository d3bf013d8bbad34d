"""The image relation: existing images published at once, new clouds built for, data per cloud."""

import dataclasses
import datetime
import json

import pytest
from ops import testing

import job_plan
from catalogue import Catalogue
from charm import GithubRunnerImageBuilderCharm
from charm_helpers import (
    ALPHA,
    BETA,
    RUNNERS,
    SHARED,
    Machine,
    base_state,
    emit,
    image_relation,
)

Ctx = testing.Context[GithubRunnerImageBuilderCharm]
PREFIX = "github-runner-image-builder"


def _published(state: testing.State, relation: testing.Relation) -> dict[str, str]:
    data: dict[str, str] = dict(state.get_relation(relation.id).local_unit_data)
    return {k: data[k] for k in ("id", "tags", "images") if k in data}


def test_existing_images_are_published_without_a_build(ctx: Ctx, machine: Machine) -> None:
    machine.plan(
        latest={
            f"{RUNNERS}/{PREFIX}-jammy-x64": "old-jammy",
            f"{RUNNERS}/{PREFIX}-noble-x64": "old-noble",
        }
    )
    relation = image_relation()
    state = base_state(relation, **{"base-image": "jammy,noble"})
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    # The lookup runs detached (the real CLI takes seconds to start) and calls back.
    machine.wait_for_callbacks(1)
    lookups = [c["argv"] for c in machine.cli_calls()]
    assert lookups == [
        [f"--os-cloud={RUNNERS}", "latest-build-id", f"{PREFIX}-jammy-x64"],
        [f"--os-cloud={RUNNERS}", "latest-build-id", f"{PREFIX}-noble-x64"],
    ]
    out = emit(ctx, out, "build_finished")
    assert _published(out, relation) == {
        "id": "old-jammy",
        "tags": "x64,jammy",
        "images": '[{"id":"old-jammy","tags":"x64,jammy"},{"id":"old-noble","tags":"x64,noble"}]',
    }
    assert machine.build_calls() == []
    assert isinstance(out.unit_status, testing.ActiveStatus)
    assert out.unit_status.message.startswith("Found 2 existing images ")
    assert out.unit_status.message.endswith(" UTC; no build needed")
    # Known now: the next relation-changed looks nothing up.
    ctx.run(ctx.on.relation_changed(out.get_relation(relation.id), remote_unit=0), out)
    assert len(machine.cli_calls()) == 2


def test_new_cloud_without_all_images_gets_a_build(ctx: Ctx, machine: Machine) -> None:
    machine.plan(latest={f"{RUNNERS}/{PREFIX}-jammy-x64": "old-jammy"})
    relation = image_relation()
    state = base_state(relation, **{"base-image": "jammy,noble"})
    out = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    machine.wait_for_callbacks(1)
    calls = machine.cli_calls()
    assert [c["argv"][1] for c in calls] == [
        "latest-build-id",
        "latest-build-id",
        "copy",
        "clean",
        "clean",
        "build",
    ]
    # The missing base is asked of the build cloud first; it has none, so a build runs.
    assert calls[2]["argv"] == [
        "--os-cloud=builder",
        "copy",
        "--base=noble",
        "--arch=x64",
        f"--prefix={PREFIX}",
        f"--upload-clouds={RUNNERS}",
    ]
    # Before building, what crashed builds left (older than any live build) is swept away in
    # the build cloud, and in every upload cloud only our unfinished uploads.
    clean = ["clean", f"--prefix={PREFIX}", "--older-than=10800"]
    assert [c["argv"] for c in calls[3:5]] == [
        ["--os-cloud=builder", *clean],
        [f"--os-cloud={RUNNERS}", *clean, "--upload-cloud"],
    ]
    # The build cloud keeps its image: the source of later copies.
    assert machine.build_specs()[0].upload.clouds == ("builder", RUNNERS)
    out = emit(ctx, out, "build_finished")
    assert json.loads(_published(out, relation)["images"]) == [
        {"id": f"img-{RUNNERS}-jammy-1", "tags": "x64,jammy"},
        {"id": f"img-{RUNNERS}-noble-1", "tags": "x64,noble"},
    ]
    assert out.unit_status.message.endswith(" UTC: 2 images, 0 failed")


def test_cloud_joining_during_a_build_is_served_after_it(ctx: Ctx, machine: Machine) -> None:
    machine.plan(build={"wait": True}, latest={f"{BETA}/{PREFIX}-noble-x64": "beta-old"})
    alpha, beta = image_relation("alpha", "bot"), image_relation("beta", "bot")
    state = ctx.run(ctx.on.action("run"), base_state(alpha))
    machine.wait_for_build_waiting()
    state = testing.State(
        config=state.config,
        secrets=state.secrets,
        relations={state.get_relation(alpha.id), beta},
        leader=True,
    )
    state = ctx.run(ctx.on.relation_changed(beta, remote_unit=0), state)
    assert not machine.paths.queued.exists()  # not a full rebuild: a lookup after the build
    machine.release()
    machine.wait_for_callbacks(1)
    state = emit(ctx, state, "build_finished")
    assert _published(state, alpha)["id"] == f"img-{ALPHA}-noble-1"
    machine.wait_for_callbacks(2)
    lookup_job = machine.paths.current.read_text()
    state = emit(ctx, state, "build_finished")
    assert _published(state, beta)["id"] == "beta-old"
    assert len(machine.build_calls()) == 1
    # Nothing more to do: the handler started no further job (it would rewrite current.json).
    assert machine.paths.current.read_text() == lookup_job
    assert not machine.paths.queued.exists()


def test_two_requirer_clouds_each_get_their_own_ids(ctx: Ctx, machine: Machine) -> None:
    alpha, beta = image_relation("alpha", "bot"), image_relation("beta", "bot")
    state = ctx.run(ctx.on.action("run"), base_state(alpha, beta))
    machine.wait_for_callbacks(1)
    assert machine.build_specs()[0].upload.clouds == ("builder", ALPHA, BETA)
    state = emit(ctx, state, "build_finished")
    assert _published(state, alpha)["id"] == f"img-{ALPHA}-noble-1"
    assert _published(state, beta)["id"] == f"img-{BETA}-noble-1"
    assert _published(state, beta)["tags"] == "x64,noble"
    assert state.unit_status.message.endswith(" UTC: 2 images, 0 failed")


def test_one_requirer_cloud_publishes_on_each_of_its_relations(ctx: Ctx, machine: Machine) -> None:
    first, second = image_relation("shared", "bot"), image_relation("shared", "bot")
    state = ctx.run(ctx.on.action("run"), base_state(first, second))
    machine.wait_for_callbacks(1)
    state = emit(ctx, state, "build_finished")
    assert _published(state, first) == _published(state, second)
    assert _published(state, first)["id"] == f"img-{SHARED}-noble-1"


def test_departed_last_unit_stops_publishing_there(ctx: Ctx, machine: Machine) -> None:
    alpha, beta = image_relation("alpha", "bot"), image_relation("beta", "bot")
    state = ctx.run(ctx.on.action("run"), base_state(alpha, beta))
    machine.wait_for_callbacks(1)
    state = emit(ctx, state, "build_finished")
    # beta's only unit leaves: its data and its cloud go; alpha is untouched.
    gone = state.get_relation(beta.id)
    emptied = testing.Relation(
        "image", id=gone.id, remote_units_data={}, local_unit_data=dict(gone.local_unit_data)
    )
    state = testing.State(
        config=state.config,
        secrets=state.secrets,
        relations={state.get_relation(alpha.id), emptied},
        leader=True,
    )
    out = ctx.run(ctx.on.relation_departed(emptied, remote_unit=0, departing_unit=0), state)
    assert _published(out, emptied) == {}
    assert _published(out, alpha)["id"] == f"img-{ALPHA}-noble-1"
    assert Catalogue.from_json(machine.paths.catalogue.read_text()).clouds() == {ALPHA}


def test_last_relation_broken_asks_for_integration(ctx: Ctx, machine: Machine) -> None:
    relation = image_relation()
    state = ctx.run(ctx.on.action("run"), base_state(relation))
    machine.wait_for_callbacks(1)
    state = emit(ctx, state, "build_finished")
    out = ctx.run(ctx.on.relation_broken(state.get_relation(relation.id)), state)
    assert out.unit_status == testing.BlockedStatus("image integration required")


def test_a_copycat_relation_cannot_change_another_clouds_password_or_images(
    ctx: Ctx, machine: Machine
) -> None:
    """Same project, user, domains and auth URL, another password: the later relation loses."""
    import yaml

    from charm_helpers import requirer_data

    mine = requirer_data("runners", "runner")
    victim = testing.Relation("image", id=3, remote_units_data={0: mine})
    copycat = testing.Relation(
        "image", id=7, remote_units_data={0: {**mine, "password": "attacker-" + mine["password"]}}
    )
    state = ctx.run(ctx.on.relation_changed(copycat, remote_unit=0), base_state(copycat, victim))
    auth = yaml.safe_load(machine.paths.clouds_yaml.read_text())["clouds"][RUNNERS]["auth"]
    assert auth["password"] == mine["password"]
    assert machine.cli_calls() == []  # the copycat's touch starts nothing
    state = ctx.run(ctx.on.action("run"), state)
    machine.wait_for_callbacks(1)
    state = emit(ctx, state, "build_finished")
    assert _published(state, victim)["id"] == f"img-{RUNNERS}-noble-1"
    assert _published(state, copycat) == {}
    assert [spec.upload.clouds for spec in machine.build_specs()] == [("builder", RUNNERS)]


def _with(state: testing.State, *relations: testing.Relation) -> testing.State:
    """The same unit, now with these relations (a requirer joined)."""
    return dataclasses.replace(state, relations=frozenset({*state.relations, *relations}))


def test_a_new_cloud_gets_a_copy_and_nobody_a_rebuild(ctx: Ctx, machine: Machine) -> None:
    alpha, beta = image_relation("alpha", "bot"), image_relation("beta", "bot")
    state = ctx.run(ctx.on.action("run"), base_state(alpha))
    machine.wait_for_callbacks(1)
    state = emit(ctx, state, "build_finished")
    alpha_id = _published(state, alpha)["id"]
    state = ctx.run(ctx.on.relation_changed(beta, remote_unit=0), _with(state, beta))
    machine.wait_for_callbacks(2)
    state = emit(ctx, state, "build_finished")
    assert _published(state, beta)["id"] == f"copy-{BETA}-img-builder-noble-1"
    assert _published(state, alpha)["id"] == alpha_id
    assert len(machine.build_calls()) == 1
    assert state.unit_status.message.startswith("Copied 1 image from the build cloud ")


def _served_alpha_and_refusing_beta(
    ctx: Ctx, machine: Machine
) -> tuple[testing.State, testing.Relation, testing.Relation, str]:
    """Build for cloud alpha, then relate cloud beta, whose copies will fail."""
    alpha, beta = image_relation("alpha", "bot"), image_relation("beta", "bot")
    state = ctx.run(ctx.on.action("run"), base_state(alpha))
    machine.wait_for_callbacks(1)
    state = emit(ctx, state, "build_finished")
    alpha_id = _published(state, alpha)["id"]
    machine.plan(copy_fail=[BETA])
    return _with(state, beta), alpha, beta, alpha_id


def test_touches_of_a_broken_cloud_start_one_job_and_churn_nobody(
    ctx: Ctx, machine: Machine
) -> None:
    """Issue 11 #3: four relation-changed of a cloud that refuses copies, one job, no build."""
    state, alpha, beta, alpha_id = _served_alpha_and_refusing_beta(ctx, machine)
    for touch in range(4):
        state = ctx.run(ctx.on.relation_changed(state.get_relation(beta.id), remote_unit=0), state)
        machine.wait_for_callbacks(len(machine.juju_exec_calls()))
        state = emit(ctx, state, "build_finished")
        assert _published(state, alpha)["id"] == alpha_id, f"touch {touch}"
        assert _published(state, beta) == {}
    assert len(machine.juju_exec_calls()) == 2  # the first build, and one copy attempt
    assert len(machine.build_calls()) == 1
    assert "1 failed" in state.unit_status.message


def test_after_the_interval_a_broken_cloud_is_tried_again_still_without_a_build(
    ctx: Ctx, machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_plan, "SERVE_INTERVAL", datetime.timedelta(0))
    state, alpha, beta, alpha_id = _served_alpha_and_refusing_beta(ctx, machine)
    for touch in range(2):
        state = ctx.run(ctx.on.relation_changed(state.get_relation(beta.id), remote_unit=0), state)
        machine.wait_for_callbacks(2 + touch)
        state = emit(ctx, state, "build_finished")
    assert [c["argv"][1] for c in machine.cli_calls()].count("copy") == 2
    assert len(machine.build_calls()) == 1
    assert _published(state, alpha)["id"] == alpha_id
