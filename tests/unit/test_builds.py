"""Builds: started, queued, finished, failed — through the real detached runner."""

import json
from dataclasses import replace

import pytest
from ops import testing

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
    script_secret,
    valid_config,
)

Ctx = testing.Context[GithubRunnerImageBuilderCharm]


def _published(state: testing.State, relation: testing.Relation) -> dict[str, str]:
    data: dict[str, str] = dict(state.get_relation(relation.id).local_unit_data)
    return {k: data[k] for k in ("id", "tags", "images") if k in data}


def test_run_action_without_requirer_fails_clearly(ctx: Ctx, machine: Machine) -> None:
    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(ctx.on.action("run"), base_state())
    assert failure.value.message == (
        "no image relation has given OpenStack credentials yet; integrate a runner charm "
        "first: juju integrate github-runner-image-builder:image github-runner:image"
    )
    assert machine.cli_calls() == []


def test_run_action_with_bad_config_fails_naming_the_option(ctx: Ctx, machine: Machine) -> None:
    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(ctx.on.action("run"), base_state(image_relation(), **{"build-interval": 0}))
    assert failure.value.message.startswith(
        "cannot build until the configuration is fixed: build-interval: 0 is out of range"
    )


def test_build_started_then_finished_publishes(ctx: Ctx, machine: Machine) -> None:
    relation = image_relation()
    state = base_state(relation)
    out = ctx.run(ctx.on.action("run"), state)
    assert ctx.action_results is not None
    assert ctx.action_results["result"] == "started"
    run_id = ctx.action_results["build-id"]

    machine.wait_for_callbacks(1)
    assert machine.juju_exec_calls() == [
        [UNIT, "JUJU_DISPATCH_PATH=hooks/build-finished", "./dispatch"]
    ]
    argv = machine.build_calls()[0]["argv"]
    assert argv[:2] == ["--os-cloud=builder", "build"]
    assert [word.split("=")[0] for word in argv[2:]] == ["--spec"]
    [spec] = machine.build_specs()
    assert spec.upload.clouds == ("builder", RUNNERS)
    assert spec.prune.keep_revisions == 5
    assert spec.image.prefix == "github-runner-image-builder"
    assert spec.prune.protect == frozenset()  # nothing is published yet

    out = emit(ctx, out, "build_finished")
    assert _published(out, relation) == {
        "id": f"img-{RUNNERS}-noble-1",
        "tags": "x64,noble",
        "images": f'[{{"id":"img-{RUNNERS}-noble-1","tags":"x64,noble"}}]',
    }
    assert isinstance(out.unit_status, testing.ActiveStatus)
    assert out.unit_status.message.startswith("Last build ")
    assert out.unit_status.message.endswith(" UTC: 1 image, 0 failed")
    result = json.loads(machine.paths.result.read_text())
    assert result["run_id"] == run_id
    # The callback arriving twice (or update-status after it) publishes nothing new.
    again = emit(ctx, out, "build_finished")
    assert _published(again, relation) == _published(out, relation)


def test_two_bases_publish_first_as_id_and_all_in_images(ctx: Ctx, machine: Machine) -> None:
    relation = image_relation()
    out = ctx.run(ctx.on.action("run"), base_state(relation, **{"base-image": "jammy,noble"}))
    machine.wait_for_callbacks(1)
    out = emit(ctx, out, "build_finished")
    published = _published(out, relation)
    assert published["id"] == f"img-{RUNNERS}-jammy-1"
    assert published["tags"] == "x64,jammy"
    assert json.loads(published["images"]) == [
        {"id": f"img-{RUNNERS}-jammy-1", "tags": "x64,jammy"},
        {"id": f"img-{RUNNERS}-noble-1", "tags": "x64,noble"},
    ]
    assert out.unit_status.message.endswith(" UTC: 2 images, 0 failed")


def test_trigger_while_running_queues_one_follow_up(ctx: Ctx, machine: Machine) -> None:
    machine.plan(build={"wait": True})
    relation = image_relation()
    state = ctx.run(ctx.on.action("run"), base_state(relation))
    assert ctx.action_results is not None
    first = dict(ctx.action_results)
    machine.wait_for_build_waiting()

    # The hook returned while the build runs; more triggers coalesce into one queued rebuild.
    state = ctx.run(ctx.on.action("run"), state)
    assert ctx.action_results == {
        "result": "queued",
        "build-id": first["build-id"],
        "detail": "a build is running; one rebuild will start when it ends",
    }
    state = emit(ctx, state, "run")  # the cron event
    state = ctx.run(ctx.on.update_status(), state)
    assert isinstance(state.unit_status, testing.MaintenanceStatus)
    assert state.unit_status.message.startswith("Building images since ")
    assert state.unit_status.message.endswith(" UTC, rebuild queued")
    assert len(machine.build_calls()) == 1

    machine.plan(build={})
    machine.release()
    machine.wait_for_callbacks(1)
    state = emit(ctx, state, "build_finished")
    # The handler published the first build and started exactly one follow-up.
    assert _published(state, relation)["id"] == f"img-{RUNNERS}-noble-1"
    machine.wait_for_callbacks(2)
    assert len(machine.build_calls()) == 2
    assert not machine.paths.queued.exists()
    state = emit(ctx, state, "build_finished")
    assert _published(state, relation)["id"] == f"img-{RUNNERS}-noble-2"
    # The follow-up protected the image the first build published.
    assert machine.build_specs()[1].prune.protect == {f"img-{RUNNERS}-noble-1"}
    assert len(machine.build_calls()) == 2


def test_failed_build_keeps_published_images_and_says_what_failed(
    ctx: Ctx, machine: Machine
) -> None:
    relation = image_relation()
    state = ctx.run(ctx.on.action("run"), base_state(relation, **{"base-image": "jammy,noble"}))
    machine.wait_for_callbacks(1)
    state = emit(ctx, state, "build_finished")
    before = _published(state, relation)

    machine.plan(build={"fail_bases": ["jammy"]})
    state = ctx.run(ctx.on.action("run"), state)
    machine.wait_for_callbacks(2)
    state = emit(ctx, state, "build_finished")
    after = _published(state, relation)
    # jammy failed: its old image stays; noble was rebuilt and replaces its predecessor.
    assert after["id"] == before["id"] == f"img-{RUNNERS}-jammy-1"
    assert json.loads(after["images"]) == [
        {"id": f"img-{RUNNERS}-jammy-1", "tags": "x64,jammy"},
        {"id": f"img-{RUNNERS}-noble-2", "tags": "x64,noble"},
    ]
    message = state.unit_status.message
    assert isinstance(state.unit_status, testing.ActiveStatus)
    assert message.endswith(
        f" UTC: 1 image, 1 failed (jammy/x64 in {RUNNERS} at wait: "
        "builder VM never reached SHUTOFF)"
    )


@pytest.mark.parametrize(
    ("stdout", "code", "error"),
    [
        ("Traceback: boom", 2, "the CLI exited 2 without a JSON answer; see the build log"),
        ('{"images": [], "failures": []}', 3, "the CLI exited 3; see the build log"),
    ],
)
def test_crashed_build_keeps_published_images(
    ctx: Ctx, machine: Machine, stdout: str, code: int, error: str
) -> None:
    relation = image_relation()
    state = ctx.run(ctx.on.action("run"), base_state(relation))
    machine.wait_for_callbacks(1)
    state = emit(ctx, state, "build_finished")
    before = _published(state, relation)
    machine.plan(build={"stdout": stdout, "exit": code})
    state = ctx.run(ctx.on.action("run"), state)
    machine.wait_for_callbacks(2)
    state = emit(ctx, state, "build_finished")
    assert _published(state, relation) == before
    assert state.unit_status.message.endswith(f" UTC failed: {error}")


def test_update_status_publishes_a_build_whose_callback_was_lost(
    ctx: Ctx, machine: Machine
) -> None:
    relation = image_relation()
    state = ctx.run(ctx.on.action("run"), base_state(relation))
    machine.wait_for_callbacks(1)
    # The juju-exec callback never reached the charm; update-status is the safety net.
    state = ctx.run(ctx.on.update_status(), state)
    assert _published(state, relation)["id"] == f"img-{RUNNERS}-noble-1"
    assert state.unit_status.message.endswith(" UTC: 1 image, 0 failed")


def test_build_killed_without_result_is_reported(ctx: Ctx, machine: Machine) -> None:
    relation = image_relation()
    state = ctx.run(ctx.on.action("run"), base_state(relation))
    machine.wait_for_callbacks(1)
    state = ctx.run(ctx.on.update_status(), state)
    # A later build whose process vanished: current.json names it, no result does.
    current = json.loads(machine.paths.current.read_text())
    machine.paths.current.write_text(json.dumps({**current, "run_id": "vanished"}))
    state = ctx.run(ctx.on.update_status(), state)
    assert state.unit_status.message.endswith(
        " UTC failed: the build process ended without a result (killed or rebooted?)"
    )
    assert _published(state, relation)["id"] == f"img-{RUNNERS}-noble-1"


def test_cron_run_event_starts_a_build(ctx: Ctx, machine: Machine) -> None:
    state = emit(ctx, base_state(image_relation()), "run")
    machine.wait_for_callbacks(1)
    assert len(machine.build_calls()) == 1
    assert isinstance(state.unit_status, testing.MaintenanceStatus | testing.ActiveStatus)


def test_cron_run_event_without_requirer_builds_nothing(ctx: Ctx, machine: Machine) -> None:
    state = emit(ctx, base_state(), "run")
    assert machine.cli_calls() == []
    assert state.unit_status == testing.BlockedStatus("image integration required")


def test_image_settings_change_rebuilds_but_schedule_change_does_not(
    ctx: Ctx, machine: Machine
) -> None:
    relation = image_relation()
    state = ctx.run(ctx.on.config_changed(), base_state(relation))
    machine.wait_for_callbacks(1)
    state = emit(ctx, state, "build_finished")
    assert len(machine.build_calls()) == 1

    # The application's fingerprint key (a Juju secret) stays across hooks.
    key = {s for s in state.secrets if s.label == "fingerprint-key"}
    schedule = base_state(relation, **{"build-interval": 2})
    state = ctx.run(ctx.on.config_changed(), replace(schedule, secrets=schedule.secrets | key))
    assert len(machine.build_calls()) == 1  # synchronous: a build would have been launched

    image = base_state(relation, **{"runner-version": "2.321.0"})
    ctx.run(ctx.on.config_changed(), replace(image, secrets=image.secrets | key))
    machine.wait_for_callbacks(2)
    assert machine.build_specs()[1].image.runner_version == "2.321.0"


def test_script_secret_reaches_the_cli_only_through_its_environment(
    ctx: Ctx, machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUJU_CHARM_HTTP_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("JUJU_CHARM_NO_PROXY", "10.0.0.0/8")
    password, script = password_secret(), script_secret()
    config = valid_config(
        password,
        **{"script-secret-id": script.id, "script-url": "https://example.com/setup.sh"},
    )
    state = testing.State(
        config=config, secrets={password, script}, relations={image_relation()}, leader=True
    )
    ctx.run(ctx.on.action("run"), state)
    machine.wait_for_callbacks(1)
    call = machine.build_calls()[0]
    assert call["secrets"] == {"IMAGE_BUILDER_SECRET_API_TOKEN": SCRIPT_SECRET}
    assert SCRIPT_SECRET not in " ".join(call["argv"])
    assert machine.build_specs()[0].image.script_url == "https://example.com/setup.sh"
    # The model's proxy may carry credentials: the CLI gets it in its environment only.
    assert "proxy" not in json.dumps(call["spec"]) and "proxy" not in " ".join(call["argv"])
    assert call["env"]["IMAGE_BUILDER_PROXY"] == "http://proxy.internal:3128"
    assert call["env"]["http_proxy"] == "http://proxy.internal:3128"
    assert call["env"]["OS_CLIENT_CONFIG_FILE"] == str(machine.paths.clouds_yaml)
    assert SCRIPT_SECRET not in machine.paths.build_log.read_text()


def test_base_change_keeps_the_old_image_published_until_the_new_one_exists(
    ctx: Ctx, machine: Machine
) -> None:
    relation = image_relation()
    state = ctx.run(ctx.on.config_changed(), base_state(relation))
    machine.wait_for_callbacks(1)
    state = emit(ctx, state, "build_finished")
    assert _published(state, relation)["tags"] == "x64,noble"

    machine.plan(build={"wait": True})
    changed = testing.State(
        config={**state.config, "base-image": "jammy"},
        secrets=state.secrets,
        relations=state.relations,
        leader=True,
    )
    state = ctx.run(ctx.on.config_changed(), changed)
    machine.wait_for_build_waiting()
    # While jammy builds, the runners keep booting the noble image.
    assert _published(state, relation)["id"] == f"img-{RUNNERS}-noble-1"
    assert machine.build_specs()[1].prune.protect == {f"img-{RUNNERS}-noble-1"}

    machine.plan(build={})
    machine.release()
    machine.wait_for_callbacks(2)
    state = emit(ctx, state, "build_finished")
    assert _published(state, relation) == {
        "id": f"img-{RUNNERS}-jammy-2",
        "tags": "x64,jammy",
        "images": f'[{{"id":"img-{RUNNERS}-jammy-2","tags":"x64,jammy"}}]',
    }
    # The noble image is no longer current, so the next build may prune it.
    catalogue = Catalogue.from_json(machine.paths.catalogue.read_text())
    assert [(i.cloud, i.base, i.id) for i in catalogue.images] == [
        (RUNNERS, "jammy", f"img-{RUNNERS}-jammy-2")
    ]
