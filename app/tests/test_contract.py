"""Tests of the rules the charm and the CLI share (image_builder_contract)."""

import pytest

from image_builder_contract import cli_args, names, platforms, rules


def test_command_line_joins_each_value_to_its_flag_and_leaves_out_empty_ones() -> None:
    line = cli_args.command_line("-x", "build", {"--flavor": "--help", "--network": ""})
    assert line == ("--os-cloud=-x", "build", "--flavor=--help")


@pytest.mark.parametrize(("flag", "value"), [("flavor", "x"), ("--a=b", "x"), ("--a", "x\0")])
def test_option_refuses_what_no_command_line_can_carry(flag: str, value: str) -> None:
    with pytest.raises(ValueError):
        cli_args.option(flag, value)


def test_secret_keys_that_become_one_variable_are_refused_naming_both() -> None:
    with pytest.raises(rules.SecretKeyError) as error:
        rules.secret_environment({"api-token": "a", "api_token": "b"})
    assert error.value.keys == ("api-token", "api_token")
    assert (
        str(error.value)
        == "keys 'api-token' and 'api_token' both become API_TOKEN; rename one of them"
    )


def test_secret_environment_maps_juju_keys_to_variable_names() -> None:
    assert rules.secret_environment({"api-token": "a", "b2": "c"}) == {"API_TOKEN": "a", "B2": "c"}


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:pw@p:3128", "http://***@p:3128"),
        ("u:pw@p:3128", "***@p:3128"),
        ("http://p:3128", "http://p:3128"),
        ("http://p:3128/a@b", "http://p:3128/a@b"),
    ],
)
def test_proxy_credentials_never_reach_a_message(url: str, shown: str) -> None:
    assert rules.redact_url(url) == shown
    if "pw" in url:
        # A proxy may carry credentials (the build uses them, the image keeps none), but a
        # message about a bad one never shows them.
        assert rules.normalize_proxy(url).endswith("u:pw@p:3128")
        with pytest.raises(ValueError) as error:
            rules.normalize_proxy(url.replace("3128", "0"))
        assert "pw" not in str(error.value)


def test_builder_names_begin_with_the_builder_prefix() -> None:
    base, arch = platforms.parse_base("noble"), platforms.parse_arch("arm64")
    name = names.resource_name("p", "builder", base, arch, "ab12")
    assert name == "p-builder-noble-arm64-ab12"
    assert name.startswith(names.temporary_prefixes("p"))


def test_every_runner_base_is_a_known_word() -> None:
    assert set(platforms.RUNNER_BASES) <= {b.codename for b in platforms.BASES}


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("invalid 'http://u:s3cr/et@h:1' (see --help)", "invalid 'http://***@h:1' (see --help)"),
        ("--proxy=u:a=b@squid:3128", "--proxy=***@squid:3128"),
        (
            "build: --script-url=https://u:pw@h/s.sh --x",
            "build: --script-url=https://***@h/s.sh --x",
        ),
        ("(https://u:pw@h/x) and u:pw@h:1", "(https://***@h/x) and ***@h:1"),
        # Nothing to hide: a path holding "@", an e-mail address, no URL at all.
        ("https://h/p@v1 from a@b.example", "https://h/p@v1 from a@b.example"),
        ("x:" * 1000, "x:" * 1000),
    ],
)
def test_urls_in_free_text_lose_their_credentials(text: str, shown: str) -> None:
    assert rules.redact_urls(text) == shown
