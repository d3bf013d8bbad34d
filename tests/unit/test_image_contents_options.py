"""The options of issue 10 under Scenario: architectures, runner-binary-repo, base pinning."""

from typing import Any

import pytest
from ops import testing

from charm import GithubRunnerImageBuilderCharm
from charm_helpers import RUNNERS, Machine, base_state, emit, image_relation

Ctx = testing.Context[GithubRunnerImageBuilderCharm]


def blocked(ctx: Ctx, machine: Machine, **config: str) -> str:
    out = ctx.run(ctx.on.config_changed(), base_state(image_relation(), **config))
    assert isinstance(out.unit_status, testing.BlockedStatus), out.unit_status
    assert machine.cli_calls() == []  # Blocked: no build
    return out.unit_status.message


def built(ctx: Ctx, machine: Machine, **config: str) -> dict[str, Any]:
    """Return the `image` part of the build spec the CLI received, as it reads in the file."""
    out = ctx.run(ctx.on.action("run"), base_state(image_relation(), **config))
    assert not isinstance(out.unit_status, testing.BlockedStatus), out.unit_status
    machine.wait_for_callbacks(1)
    image: dict[str, Any] = machine.build_calls()[0]["spec"]["image"]
    return image


@pytest.mark.parametrize(
    ("word", "github"),
    [
        ("x86_64", "x64"),
        ("aarch64", "arm64"),
        ("ppc64el", "ppc64le"),
        ("ppc64le", "ppc64le"),
        ("s390x", "s390x"),
        ("armhf", "arm"),
        ("arm", "arm"),
        ("armv7l", "arm"),
    ],
)
def test_every_architecture_word_reaches_the_cli(
    ctx: Ctx, machine: Machine, word: str, github: str
) -> None:
    image = built(
        ctx,
        machine,
        architecture=word,
        **{"runner-binary-repo": "canonical/github-actions-runner"},
    )
    assert image["arches"] == [github]
    assert image["runner_binary_repo"] == "canonical/github-actions-runner"


def test_the_default_runner_repository_is_upstream(ctx: Ctx, machine: Machine) -> None:
    assert built(ctx, machine)["runner_binary_repo"] == "actions/runner"


@pytest.mark.parametrize("arch", ["s390x", "ppc64le"])
def test_an_architecture_upstream_does_not_build_needs_a_runner_repository(
    ctx: Ctx, machine: Machine, arch: str
) -> None:
    message = blocked(ctx, machine, architecture=arch)
    assert message == (
        f"runner-binary-repo: actions/runner publishes no {arch} runner; set runner-binary-repo "
        "to a repository that does, e.g. canonical/github-actions-runner"
    )


@pytest.mark.parametrize(
    "repo", ["actions", "a/b/c", "$(reboot)/x", "owner/../x", "-x/y", "https://github.com/a/b"]
)
def test_a_bad_runner_repository_blocks_naming_the_option(
    ctx: Ctx, machine: Machine, repo: str
) -> None:
    message = blocked(ctx, machine, **{"runner-binary-repo": repo})
    assert message.startswith(f"runner-binary-repo: {repo!r} is not a GitHub repository")


@pytest.mark.parametrize("bases", ["jammy", "noble,focal", "20.04"])
def test_armhf_on_a_base_older_than_noble_blocks(ctx: Ctx, machine: Machine, bases: str) -> None:
    message = blocked(ctx, machine, architecture="armhf", **{"base-image": bases})
    assert message.startswith("base-image: armhf images need noble (24.04) or later, and ")
    assert "is older; remove it or choose another architecture" in message


def test_armhf_on_noble_and_resolute_builds(ctx: Ctx, machine: Machine) -> None:
    image = built(ctx, machine, architecture="armhf", **{"base-image": "noble,resolute"})
    assert (image["arches"], image["bases"]) == (["arm"], ["noble", "resolute"])


def test_a_pinned_serial_reaches_the_cli(ctx: Ctx, machine: Machine) -> None:
    image = built(ctx, machine, **{"base-image": "noble@20260715, 22.04"})
    assert image["bases"] == ["noble@20260715", "jammy"]


def test_a_pinned_armhf_image_is_published_under_its_release_and_arch(
    ctx: Ctx, machine: Machine
) -> None:
    relation = image_relation()
    config = {"base-image": "noble@20260715", "architecture": "armv7l"}
    state = ctx.run(ctx.on.action("run"), base_state(relation, **config))
    machine.wait_for_callbacks(1)
    out = emit(ctx, state, "build_finished")
    data: dict[str, str] = dict(out.get_relation(relation.id).local_unit_data)
    assert data["tags"] == "arm,noble"
    assert data["id"] == f"img-{RUNNERS}-noble-1"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("noble@latest", "base-image: 'noble@latest': 'latest' is not a cloud image serial"),
        ("noble@", "base-image: 'noble@': '' is not a cloud image serial"),
        ("noble@2026-07-15", "is not a cloud image serial; pin one as it is named under"),
        ("bionic@20260715", "base-image: unknown Ubuntu release 'bionic'"),
        ("noble@20260715,noble@20260801", "noble is given twice with different serials"),
        ("noble,noble@20260801", "noble is given twice with different serials"),
    ],
)
def test_a_bad_pin_blocks_naming_the_option(
    ctx: Ctx, machine: Machine, value: str, message: str
) -> None:
    assert message in blocked(ctx, machine, **{"base-image": value})


def test_changing_a_pin_or_the_runner_repository_changes_the_fingerprint() -> None:
    from config import ProxyConfig, load_config

    def fingerprint(**config: str) -> str:
        values: dict[str, str | int] = {
            "architecture": "amd64",
            "base-image": "noble",
            "build-interval": 6,
            "revision-history-limit": 5,
            "openstack-auth-url": "https://k:5000/v3",
            "openstack-password-secret": "secret:x",
            "openstack-project-domain-name": "d",
            "openstack-project-name": "p",
            "openstack-user-domain-name": "d",
            "openstack-user-name": "u",
            **config,
        }
        return load_config(
            values, lambda _id: {"password": "pw"}, ProxyConfig(), "image-builder"
        ).fingerprint(b"key")

    plain = fingerprint()
    assert fingerprint(**{"base-image": "noble@20260715"}) != plain
    assert fingerprint(**{"runner-binary-repo": "canonical/github-actions-runner"}) != plain
    assert fingerprint(**{"runner-binary-repo": "actions/runner"}) == plain
