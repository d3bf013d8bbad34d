"""No secret reaches a log record, the build log, or any command line."""

import logging

import pytest
from ops import testing

from charm import GithubRunnerImageBuilderCharm
from charm_helpers import (
    PASSWORD,
    REQUIRER_PASSWORD,
    SCRIPT_SECRET,
    Machine,
    emit,
    image_relation,
    password_secret,
    script_secret,
    valid_config,
)

Ctx = testing.Context[GithubRunnerImageBuilderCharm]
SECRETS = (PASSWORD, SCRIPT_SECRET, REQUIRER_PASSWORD)


def test_secrets_stay_out_of_every_log(
    ctx: Ctx, machine: Machine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password, script = password_secret(), script_secret()
    relation = image_relation()
    config = valid_config(password, **{"script-secret-id": script.id})
    state = testing.State(
        config=config, secrets={password, script}, relations={relation}, leader=True
    )

    # A whole life: configure, integrate, build, fail a build, rotate a secret, bad config.
    state = ctx.run(ctx.on.config_changed(), state)
    state = ctx.run(ctx.on.relation_changed(state.get_relation(relation.id), remote_unit=0), state)
    machine.wait_for_callbacks(1)
    state = emit(ctx, state, "build_finished")
    machine.plan(build={"fail_bases": ["noble"]})
    state = ctx.run(ctx.on.action("run"), state)
    machine.wait_for_callbacks(2)
    state = ctx.run(ctx.on.update_status(), state)
    state = ctx.run(ctx.on.secret_changed(script), state)
    bad = testing.State(
        config={**config, "architecture": "sparc"},
        secrets={password, script},
        relations={relation},
        leader=True,
    )
    ctx.run(ctx.on.config_changed(), bad)

    assert len(caplog.records) > 20  # the charm and ops really logged
    for record in caplog.records:
        text = record.getMessage() + repr(record.args)
        for secret in SECRETS:
            assert secret not in text, f"secret in log record from {record.name}"
    for line in ctx.juju_log:
        for secret in SECRETS:
            assert secret not in line.message
    build_log = machine.paths.build_log.read_text()
    assert "starting" in build_log
    for secret in SECRETS:
        assert secret not in build_log
        for call in machine.cli_calls():
            assert secret not in " ".join(call["argv"])
        for argv in machine.juju_exec_calls():
            assert secret not in " ".join(argv)
    # The script secret did reach the CLI, through its environment.
    assert machine.build_calls()[0]["secrets"] == {"IMAGE_BUILDER_SECRET_API_TOKEN": SCRIPT_SECRET}


def test_invalid_requirer_credentials_are_ignored_without_logging_them(
    ctx: Ctx, machine: Machine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = password_secret()
    bad = {"auth_url": "not a url", "password": REQUIRER_PASSWORD, "username": "u"}
    relation = testing.Relation("image", remote_units_data={0: bad})
    state = testing.State(config=valid_config(password), secrets={password}, relations={relation})
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    assert out.unit_status == testing.WaitingStatus(
        "waiting for OpenStack credentials from a requirer"
    )
    assert any("Ignoring credentials" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert REQUIRER_PASSWORD not in record.getMessage() + repr(record.args)
    assert machine.cli_calls() == []
