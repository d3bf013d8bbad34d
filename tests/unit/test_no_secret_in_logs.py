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


URL_SECRET = "s3cr3t-in-url"  # noqa: S105 - a test value


@pytest.mark.parametrize(
    ("option", "value"),
    [
        # Refused: a script URL may not carry credentials (the script's secrets are script
        # secrets); whatever else is wrong with it, the message never shows them.
        ("script-url", f"https://builder:{URL_SECRET}@scripts.example/build.sh"),
        ("script-url", f"https://builder:{URL_SECRET}@scripts.example/my build.sh"),
        ("verify-script-url", f"http://builder:{URL_SECRET}@scripts.example/t.sh"),
        # A proxy password holding "/" unencoded makes the URL unreadable: it is refused too.
        ("JUJU_CHARM_HTTP_PROXY", f"http://builder:{URL_SECRET}/x@squid.internal:3128"),
    ],
)
def test_credentials_in_a_refused_url_never_reach_status_or_logs(
    ctx: Ctx,
    machine: Machine,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    option: str,
    value: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    password = password_secret()
    config = valid_config(password)
    if option.startswith("JUJU_"):
        monkeypatch.setenv(option, value)
    else:
        config[option] = value
    state = testing.State(
        config=config, secrets={password}, relations={image_relation()}, leader=True
    )
    out = ctx.run(ctx.on.config_changed(), state)
    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert "invalid" in out.unit_status.message
    assert URL_SECRET not in out.unit_status.message
    for record in caplog.records:
        assert URL_SECRET not in record.getMessage() + repr(record.args)
    for line in ctx.juju_log:
        assert URL_SECRET not in line.message
    assert machine.cli_calls() == []


def test_proxy_credentials_reach_the_cli_only_through_its_environment(
    ctx: Ctx, machine: Machine, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = f"http://builder:{URL_SECRET}@squid.internal:3128"
    monkeypatch.setenv("JUJU_CHARM_HTTP_PROXY", proxy)
    password = password_secret()
    state = testing.State(
        config=valid_config(password, **{"script-url": "https://scripts.example/build.sh"}),
        secrets={password},
        relations={image_relation()},
        leader=True,
    )
    ctx.run(ctx.on.config_changed(), state)
    machine.wait_for_callbacks(1)
    [call] = machine.build_calls()
    assert call["env"]["IMAGE_BUILDER_PROXY"] == proxy
    for argv in (c["argv"] for c in machine.cli_calls()):
        assert URL_SECRET not in " ".join(argv)
    for record in caplog.records:
        assert URL_SECRET not in record.getMessage() + repr(record.args)
    for line in ctx.juju_log:
        assert URL_SECRET not in line.message
    build_log = machine.paths.build_log.read_text()
    assert "starting" in build_log and URL_SECRET not in build_log


def test_the_build_log_is_readable_by_its_owner_and_group_only(ctx: Ctx, machine: Machine) -> None:
    # One left by an older charm at 0644 is narrowed too.
    machine.paths.log_dir.mkdir(parents=True, exist_ok=True)
    machine.paths.build_log.write_text("old\n")
    machine.paths.build_log.chmod(0o644)
    password = password_secret()
    state = testing.State(
        config=valid_config(password),
        secrets={password},
        relations={image_relation()},
        leader=True,
    )
    ctx.run(ctx.on.config_changed(), state)
    machine.wait_for_callbacks(1)
    assert machine.paths.build_log.stat().st_mode & 0o777 == 0o640
    machine.paths.build_log.unlink()
    ctx.run(ctx.on.action("run"), state)
    machine.wait_for_callbacks(2)
    assert machine.paths.build_log.stat().st_mode & 0o777 == 0o640
