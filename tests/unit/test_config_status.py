"""Every bad value of every option blocks the unit with a message naming the option."""

import pytest
from ops import testing

from charm import GithubRunnerImageBuilderCharm
from charm_helpers import (
    Machine,
    base_state,
    cli_args,
    image_relation,
    password_secret,
    valid_config,
)

Ctx = testing.Context[GithubRunnerImageBuilderCharm]

BAD_VALUES = [
    ("architecture", "sparc", "architecture: 'sparc' is not supported; use amd64, arm64, s390x"),
    ("architecture", "", "architecture: '' is not supported"),
    ("base-image", "", "base-image: is empty; set one or more releases, e.g. noble"),
    ("base-image", " , ", "base-image: is empty"),
    ("base-image", "noble,xenial", "base-image: unknown Ubuntu release 'xenial'"),
    ("base-image", "18.04", "base-image: unknown Ubuntu release '18.04'"),
    ("build-interval", 0, "build-interval: 0 is out of range; set hours from 1 to 24"),
    ("build-interval", 25, "build-interval: 25 is out of range"),
    ("build-interval", -3, "build-interval: -3 is out of range"),
    ("revision-history-limit", 1, "revision-history-limit: 1 is out of range; set a count from 2"),
    ("revision-history-limit", 100, "revision-history-limit: 100 is out of range"),
    ("runner-version", "latest", "runner-version: 'latest' is not a release number"),
    ("runner-version", "2.321", "runner-version: '2.321' is not a release number"),
    (
        "script-url",
        "http://example.com/s.sh",
        "script-url: invalid script URL 'http://example.com/s.sh': expected https://host/path",
    ),
    ("script-url", "example.com/s.sh", "script-url: invalid script URL 'example.com/s.sh'"),
    ("script-url", "https://u:pw@example.com/s.sh", "script-url: invalid script URL: it carries"),
    ("script-url", "https://example.com/my script.sh", "script-url: invalid script URL"),
    ("architecture", "s390x", "runner-binary-repo: actions/runner publishes no s390x runner"),
    ("runner-version", "\u0662.321.0", "runner-version: '\u0662.321.0' is not a release"),
    ("build-flavor", "small\0", "build-flavor: it contains a NUL byte"),
    ("build-network", "\0", "build-network: it contains a NUL byte"),
    (
        "verify-script-url",
        "http://example.com/smoke.sh",
        "verify-script-url: invalid script URL 'http://example.com/smoke.sh': expected https://",
    ),
    ("openstack-auth-url", "", "openstack-auth-url: is empty; set it, e.g. https://"),
    ("openstack-auth-url", "keystone:5000/v3", "openstack-auth-url: 'keystone:5000/v3' is not"),
    ("openstack-password-secret", None, "openstack-password-secret: is empty"),
    ("openstack-project-domain-name", "", "openstack-project-domain-name: is empty"),
    ("openstack-project-name", " ", "openstack-project-name: is empty"),
    ("openstack-user-domain-name", "", "openstack-user-domain-name: is empty"),
    ("openstack-user-name", "", "openstack-user-name: is empty"),
]


@pytest.mark.parametrize(("option", "value", "message"), BAD_VALUES)
def test_bad_value_blocks_naming_the_option(
    ctx: Ctx, machine: Machine, option: str, value: str | int | None, message: str
) -> None:
    state = base_state(image_relation(), **{option: value})
    out = ctx.run(ctx.on.config_changed(), state)
    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert out.unit_status.message.startswith(message)
    # Blocked means nothing else happens: no clouds.yaml, no cron, no build.
    assert not machine.paths.clouds_yaml.exists()
    assert not list(machine.paths.cron_dir.glob("*"))
    assert machine.cli_calls() == []


def test_unknown_password_secret_blocks(ctx: Ctx, machine: Machine) -> None:
    state = base_state(image_relation())
    config = dict(state.config)
    config["openstack-password-secret"] = testing.Secret(tracked_content={"password": "x"}).id
    out = ctx.run(ctx.on.config_changed(), testing.State(config=config, secrets=state.secrets))
    assert out.unit_status.name == "blocked"
    assert out.unit_status.message.startswith("openstack-password-secret: secret secret:")
    assert "not found; check the ID given by juju add-secret" in out.unit_status.message


def test_password_secret_without_password_key_blocks(ctx: Ctx, machine: Machine) -> None:
    secret = testing.Secret(tracked_content={"pass": "x"})
    state = testing.State(config=valid_config(secret), secrets={secret})
    out = ctx.run(ctx.on.config_changed(), state)
    assert out.unit_status == testing.BlockedStatus(
        "openstack-password-secret: secret has no `password` key; add it"
    )


def test_unknown_script_secret_blocks(ctx: Ctx, machine: Machine) -> None:
    missing = testing.Secret(tracked_content={"token": "x"})
    state = base_state(image_relation(), **{"script-secret-id": missing.id})
    out = ctx.run(ctx.on.config_changed(), state)
    assert out.unit_status.message.startswith(f"script-secret-id: secret {missing.id} not found")


def test_script_secret_key_that_is_no_variable_name_blocks(ctx: Ctx, machine: Machine) -> None:
    secret = password_secret()
    bad = testing.Secret(tracked_content={"9lives": "x"})
    state = testing.State(
        config=valid_config(secret, **{"script-secret-id": bad.id}), secrets={secret, bad}
    )
    out = ctx.run(ctx.on.config_changed(), state)
    assert out.unit_status == testing.BlockedStatus(
        "script-secret-id: key '9lives' becomes 9LIVES, which is not a shell variable name "
        "(letters, digits and underscores, not starting with a digit); rename it"
    )


def test_script_secrets_too_large_for_the_builders_user_data_block(
    ctx: Ctx, machine: Machine
) -> None:
    """The CLI would refuse every build (Nova's user-data limit): the unit says so instead."""
    secret = password_secret()
    big = testing.Secret(tracked_content={"certificate": "x" * 30_000})
    config = valid_config(
        secret, **{"script-secret-id": big.id, "script-url": "https://example.com/s.sh"}
    )
    out = ctx.run(ctx.on.config_changed(), testing.State(config=config, secrets={secret, big}))
    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert out.unit_status.message.startswith(
        "script-secret-id: the script secrets, script URL and proxy take 30"
    )
    assert "more than the 28000 it has room for" in out.unit_status.message
    assert "x" * 20 not in out.unit_status.message
    assert machine.cli_calls() == []


@pytest.mark.parametrize(
    ("key", "name"), [("path", "PATH"), ("bash-env", "BASH_ENV"), ("grib-x", "GRIB_X")]
)
def test_script_secret_key_the_build_reserves_blocks(
    ctx: Ctx, machine: Machine, key: str, name: str
) -> None:
    secret = password_secret()
    bad = testing.Secret(tracked_content={key: "x"})
    state = testing.State(
        config=valid_config(secret, **{"script-secret-id": bad.id}), secrets={secret, bad}
    )
    out = ctx.run(ctx.on.config_changed(), state)
    assert out.unit_status == testing.BlockedStatus(
        f"script-secret-id: key {key!r} becomes {name}, which is reserved by the shell or the "
        "build script; rename it"
    )


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        (("api-token", "api_token"), "'api-token' and 'api_token'"),
        (("a-b", "A-B"), "'A-B' and 'a-b'"),
    ],
)
def test_secret_keys_that_become_one_variable_block_naming_both(
    ctx: Ctx, machine: Machine, keys: tuple[str, str], named: str
) -> None:
    secret = password_secret()
    bad = testing.Secret(tracked_content=dict.fromkeys(keys, "x"))
    state = testing.State(
        config=valid_config(secret, **{"script-secret-id": bad.id}),
        secrets={secret, bad},
        relations={image_relation()},
    )
    out = ctx.run(ctx.on.config_changed(), state)
    name = keys[0].upper().replace("-", "_")
    assert out.unit_status == testing.BlockedStatus(
        f"script-secret-id: keys {named} both become {name}; rename one of them"
    )
    assert machine.cli_calls() == []


@pytest.mark.parametrize(
    ("variable", "key", "value", "problem"),
    [
        (
            "JUJU_CHARM_HTTP_PROXY",
            "juju-http-proxy",
            'http://user:hunter2"@squid.internal:3128',
            "invalid proxy 'http://***@squid.internal:3128': its user name or password holds",
        ),
        (
            "JUJU_CHARM_HTTPS_PROXY",
            "juju-https-proxy",
            "http://squid.internal:3128/path",
            "invalid proxy 'http://squid.internal:3128/path': it has a path",
        ),
        ("JUJU_CHARM_HTTP_PROXY", "juju-http-proxy", "socks5://s:1080", "scheme 'socks5'"),
    ],
)
def test_model_proxy_the_cli_refuses_blocks_naming_the_model_config_key(
    ctx: Ctx,
    machine: Machine,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    key: str,
    value: str,
    problem: str,
) -> None:
    monkeypatch.setenv(variable, value)
    out = ctx.run(ctx.on.config_changed(), base_state(image_relation()))
    assert isinstance(out.unit_status, testing.BlockedStatus)
    message = out.unit_status.message
    assert message.startswith(f"{key}: ")
    assert problem in message
    assert message.endswith(
        f"change the model config: juju model-config {key}=http://<host>:<port>"
    )
    assert "hunter2" not in message
    assert machine.cli_calls() == []


def test_usable_model_proxy_reaches_the_cli_normalised(
    ctx: Ctx, machine: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUJU_CHARM_HTTPS_PROXY", "squid.internal:3128")
    ctx.run(ctx.on.action("run"), base_state(image_relation()))
    machine.wait_for_callbacks(1)
    call = machine.build_calls()[0]
    # The build's proxy may carry credentials: it reaches the CLI in its environment only.
    assert getattr(cli_args(call["argv"]), "proxy", None) is None  # --proxy unset: suppressed
    assert call["env"]["IMAGE_BUILDER_PROXY"] == "http://squid.internal:3128"
    assert call["env"]["HTTPS_PROXY"] == "squid.internal:3128"


def test_application_name_the_cli_refuses_as_prefix_blocks(machine: Machine) -> None:
    name = "a" * 61
    ctx = testing.Context(GithubRunnerImageBuilderCharm, app_name=name, unit_id=0)
    out = ctx.run(ctx.on.config_changed(), base_state(image_relation()))
    assert out.unit_status == testing.BlockedStatus(
        f"application name: prefix {name!r} must be 1-60 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit; deploy the charm under such a name"
    )


def test_several_bad_options_are_all_named(ctx: Ctx, machine: Machine) -> None:
    state = testing.State(config={"build-interval": 99})
    out = ctx.run(ctx.on.config_changed(), state)
    message = out.unit_status.message
    assert message.startswith("build-interval: 99 is out of range")
    for option in (
        "openstack-auth-url",
        "openstack-password-secret",
        "openstack-project-name",
        "openstack-user-name",
    ):
        assert option in message


def test_valid_config_without_relation_asks_for_integration(ctx: Ctx, machine: Machine) -> None:
    out = ctx.run(ctx.on.config_changed(), base_state())
    assert out.unit_status == testing.BlockedStatus("image integration required")


def test_relation_without_credentials_waits(ctx: Ctx, machine: Machine) -> None:
    partial = {"auth_url": "https://k:5000/v3", "username": "u"}
    relation = testing.Relation("image", remote_units_data={0: partial})
    out = ctx.run(ctx.on.relation_changed(relation), base_state(relation))
    assert out.unit_status == testing.WaitingStatus(
        "waiting for OpenStack credentials from a requirer"
    )
    assert machine.cli_calls() == []


@pytest.mark.parametrize(
    ("words", "bases"),
    [("noble", ["noble"]), ("22.04, noble,jammy", ["jammy", "noble"]), ("JAMMY", ["jammy"])],
)
def test_base_words_reach_the_cli_as_codenames(
    ctx: Ctx, machine: Machine, words: str, bases: list[str]
) -> None:
    ctx.run(ctx.on.action("run"), base_state(image_relation(), **{"base-image": words}))
    machine.wait_for_callbacks(1)
    assert machine.build_calls()[0]["spec"]["image"]["bases"] == bases


@pytest.mark.parametrize(
    ("word", "github"), [("amd64", "x64"), ("arm64", "arm64"), ("x64", "x64")]
)
def test_architecture_reaches_the_cli_in_github_words(
    ctx: Ctx, machine: Machine, word: str, github: str
) -> None:
    ctx.run(ctx.on.action("run"), base_state(image_relation(), architecture=word))
    machine.wait_for_callbacks(1)
    assert machine.build_calls()[0]["spec"]["image"]["arches"] == [github]
