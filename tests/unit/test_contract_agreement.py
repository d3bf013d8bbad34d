"""The charm and the real CLI give every value of every shared option the same verdict.

For each value of the hostile and edge corpus (tests/support/hostile.py), the charm's verdict — the
`run` action refused naming the option (the unit is Blocked), or a build started — must equal the
real CLI's: a usage error (exit 2) or accepted, i.e. `cli.main` got past every check and went to
open a cloud. When the charm accepts, the CLI runs the very command line and environment the charm
wrote, and must read each value back intact (a flavor `--help` is a flavor). Config text is
compared stripped, as the charm reads it, and an empty optional value as the flag left out.
"""

import datetime
import logging
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from ops import testing

import job
from charm import GithubRunnerImageBuilderCharm
from charm_helpers import (
    Machine,
    base_state,
    image_relation,
    password_secret,
    spec_argv,
    valid_config,
)
from github_runner_image_builder import cli
from github_runner_image_builder.cli import build as cli_build
from image_builder_contract import rules

sys.path.insert(0, str(Path(__file__).parents[2]))  # tests.support: the shared corpus
from tests.support.hostile import EDGE_VALUES, hostile_values

Ctx = testing.Context[GithubRunnerImageBuilderCharm]
CORPUS = hostile_values("0123456789abcdef")
SCRIPT_URL = "https://example.com/setup.sh"
# The charm builds one architecture per application; the CLI's --arch also takes a list. This is
# the one value of the corpus on which the charm is deliberately stricter.
CHARM_ONLY_REFUSES = {("architecture", "amd64,arm64")}

Verdict = tuple[bool, str]  # (accepted, what was said)


class _CloudOpenedError(Exception):
    """The CLI accepted every option and went on to open a cloud."""


@pytest.fixture
def keep_logging() -> Iterator[None]:
    """The CLI reconfigures the root logger; give pytest's handlers back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def cli_verdict(argv: list[str], env: Mapping[str, str]) -> Verdict:
    """Run the real CLI up to the cloud; return whether it accepted the options."""
    if any("\0" in word for word in [*argv, *env, *env.values()]):
        return False, "no process can be started with a NUL byte in its argv or environment"

    def open_cloud(name: str) -> Any:
        raise _CloudOpenedError(name)

    try:
        code = cli.main(argv, env=dict(env), deps=cli.Deps(open_cloud=open_cloud))
    except _CloudOpenedError:
        return True, ""
    except SystemExit as exit_:
        return exit_.code != 2, f"exit {exit_.code}"
    return code != 2, f"exit {code}"


# A value of one option may be refused naming another, the one the operator must change.
NAMED_INSTEAD: dict[str, tuple[str, ...]] = {"architecture": ("runner-binary-repo",)}


def charm_verdict(
    ctx: Ctx, started: list[job.BuildRequest], state: testing.State, option: str
) -> tuple[bool, job.BuildRequest | None]:
    """Run the `run` action; return whether the charm started a build, and its request."""
    started.clear()
    try:
        ctx.run(ctx.on.action("run"), state)
    except testing.ActionFailed as failure:
        # An architecture upstream does not build is refused naming the option that fixes it.
        named = tuple(f"{o}: " for o in (option, *NAMED_INSTEAD.get(option, ())))
        prefix = "cannot build until the configuration is fixed: "
        assert failure.message.startswith(tuple(prefix + n for n in named)), failure.message
        assert failure.state is not None
        status = failure.state.unit_status
        assert isinstance(status, testing.BlockedStatus)
        assert status.message.startswith(named)
        return False, None
    [request] = started
    return True, request


# Options whose empty value means "not set": the charm then leaves the flag out.
REQUIRED_FLAGS = ("--arch", "--base")


def _flag_argv(flag: str, value: str) -> list[str]:
    """Return a build command line giving `flag` the value as the charm reads it (stripped)."""
    value = value.strip()
    given = bool(value) or flag in REQUIRED_FLAGS
    return ["--os-cloud=builder", "build", *([f"{flag}={value}"] if given else [])]


def _read(args: Any, attribute: str) -> object:
    """Return what the CLI's build spec holds for a flag's attribute (argparse dest)."""
    part, field = cli_build.FLAGS[attribute]
    found = getattr(getattr(cli_build.spec_of(args), part), field)
    if attribute in ("arch", "base"):
        return [getattr(word, "github", None) or word.codename for word in found]
    return found


# (charm option, CLI flag, corpus kind, the CLI's attribute)
CONFIG_OPTIONS = [
    ("architecture", "--arch", "architecture", "arch"),
    ("base-image", "--base", "base-image", "base"),
    ("runner-version", "--runner-version", "runner-version", "runner_version"),
    ("script-url", "--script-url", "script-url", "script_url"),
    ("build-flavor", "--flavor", "name", "flavor"),
    ("build-network", "--network", "name", "network"),
]
CONFIG_CASES = [
    pytest.param(option, flag, attribute, value, id=f"{option}={value!r}")
    for option, flag, kind, attribute in CONFIG_OPTIONS
    for value in dict.fromkeys([*CORPUS, *EDGE_VALUES[kind]])
]


def _agree(
    option: str,
    charm: tuple[bool, job.BuildRequest | None],
    cli_argv: list[str],
    cli_env: Mapping[str, str],
    value: str,
) -> job.BuildRequest | None:
    """Assert both verdicts are equal; return the charm's request when it accepted."""
    charm_ok, request = charm
    cli_ok, said = cli_verdict(cli_argv, cli_env)
    if (option, value) in CHARM_ONLY_REFUSES:
        assert (charm_ok, cli_ok) == (False, True)
        return None
    assert charm_ok == cli_ok, (
        f"the charm {'accepts' if charm_ok else 'refuses'} it, the CLI {said or 'accepts'}"
    )
    if request is not None:
        # The command line the charm wrote passes the real CLI too.
        assert cli_verdict(_args(request), _secret_env(request)) == (True, "")
    return request


def _job(request: job.BuildRequest) -> job.BuildJob:
    """Return the job the runner would get for this request (paths do not matter here)."""
    return job.BuildJob(
        run_id="r1",
        started_at=datetime.datetime.now(datetime.timezone.utc),
        unit="u/0",
        cli="cli",
        juju_exec="juju-exec",
        result="result.json",
        lock="build.lock",
        request=request,
    )


def _args(request: job.BuildRequest) -> list[str]:
    """Return the `build` command line the runner writes, without the program."""
    return spec_argv(_job(request))[1:]


def _secret_env(request: job.BuildRequest) -> dict[str, str]:
    """Return the script secrets as the CLI's environment carries them."""
    return job.cli_environment(_job(request))


@pytest.mark.parametrize(("option", "flag", "attribute", "value"), CONFIG_CASES)
def test_charm_and_cli_agree_on_every_config_value(
    ctx: Ctx,
    machine: Machine,
    started: list[job.BuildRequest],
    keep_logging: None,
    option: str,
    flag: str,
    attribute: str,
    value: str,
) -> None:
    state = base_state(image_relation(), **{option: value})
    charm = charm_verdict(ctx, started, state, option)
    request = _agree(option, charm, _flag_argv(flag, value), {}, value)
    if request is not None:
        # The value arrives as the CLI reads the operator's value itself.
        parser = cli.build_parser()
        got = _read(parser.parse_args(_args(request)), attribute)
        assert got == _read(parser.parse_args(_flag_argv(flag, value)), attribute)


@pytest.mark.parametrize(
    ("variable", "key"),
    [("JUJU_CHARM_HTTP_PROXY", "juju-http-proxy"), ("JUJU_CHARM_HTTPS_PROXY", "juju-https-proxy")],
)
# No environment variable can hold a NUL byte, so Juju cannot hand the charm such a proxy.
@pytest.mark.parametrize(
    "value", [v for v in dict.fromkeys([*CORPUS, *EDGE_VALUES["proxy"]]) if "\0" not in v]
)
def test_charm_and_cli_agree_on_every_model_proxy(
    ctx: Ctx,
    machine: Machine,
    started: list[job.BuildRequest],
    keep_logging: None,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    key: str,
    value: str,
) -> None:
    monkeypatch.setenv(variable, value)
    charm = charm_verdict(ctx, started, base_state(image_relation()), key)
    # The build's proxy may carry credentials: the charm hands it over in the environment only.
    env = {rules.PROXY_ENV: value} if value.strip() else {}
    request = _agree(key, charm, ["--os-cloud=builder", "build"], env, value)
    if request is not None and value.strip():
        assert not [arg for arg in _args(request) if arg.startswith("--proxy")]
        proxy = _secret_env(request)[rules.PROXY_ENV]
        assert rules.normalize_proxy(proxy) == rules.normalize_proxy(value)


def _secret_state(content: dict[str, str]) -> testing.State:
    password = password_secret()
    script = testing.Secret(tracked_content=content)
    config = valid_config(password, **{"script-secret-id": script.id, "script-url": SCRIPT_URL})
    return testing.State(
        config=config, secrets={password, script}, relations={image_relation()}, leader=True
    )


SECRET_CASES = [
    *(
        pytest.param({key: "v"}, id=f"key={key!r}")
        for key in [*CORPUS, *EDGE_VALUES["secret-key"]]
    ),
    *(
        pytest.param({"token": value}, id=f"value={value[:40]!r}")
        for value in [*CORPUS, *EDGE_VALUES["secret-value"]]
    ),
    # Around the builder's user-data room (rules.USER_DATA_ROOM): both accept, both refuse.
    pytest.param({"big": "x" * 27_000}, id="value=27000 bytes"),
    pytest.param({"big": "x" * 28_000}, id="value=28000 bytes"),
    pytest.param({f"k{i}": "'" * 1_500 for i in range(4)}, id="4 values of 1500 quotes"),
]


@pytest.mark.parametrize("content", SECRET_CASES)
def test_charm_and_cli_agree_on_every_script_secret(
    ctx: Ctx,
    machine: Machine,
    started: list[job.BuildRequest],
    keep_logging: None,
    content: dict[str, str],
) -> None:
    charm = charm_verdict(ctx, started, _secret_state(content), "script-secret-id")
    # The CLI gets each key under the variable name the charm's documented mapping gives it.
    env = {rules.SECRET_ENV_PREFIX + rules.secret_env_name(k): v for k, v in content.items()}
    request = _agree(
        "script-secret-id", charm, _flag_argv("--script-url", SCRIPT_URL), env, str(content)
    )
    if request is not None:
        assert dict(_secret_env(request)) == env


@pytest.mark.parametrize(
    ("limit", "accepted"),
    [(-1, False), (0, False), (1, False), (2, True), (99, True), (100, False)],
)
def test_revision_limits_the_charm_accepts_the_cli_accepts(
    ctx: Ctx,
    machine: Machine,
    started: list[job.BuildRequest],
    keep_logging: None,
    limit: int,
    accepted: bool,
) -> None:
    # The charm's range (2-99) is its own policy, stricter than the CLI's (>= 1).
    state = base_state(image_relation(), **{"revision-history-limit": limit})
    charm_ok, request = charm_verdict(ctx, started, state, "revision-history-limit")
    assert charm_ok == accepted
    if request is not None:
        assert cli_verdict(_args(request), {}) == (True, "")
        spec = cli_build.spec_of(cli.build_parser().parse_args(_args(request)))
        assert spec.prune.keep_revisions == limit


@pytest.mark.parametrize("app_name", ["a", "a" * 60, "a" * 61, "image-builder-2"])
def test_charm_and_cli_agree_on_the_application_name_as_prefix(
    machine: Machine, started: list[job.BuildRequest], keep_logging: None, app_name: str
) -> None:
    ctx = testing.Context(GithubRunnerImageBuilderCharm, app_name=app_name, unit_id=0)
    charm = charm_verdict(ctx, started, base_state(image_relation()), "application name")
    _agree("application name", charm, _flag_argv("--prefix", app_name), {}, app_name)


def test_option_like_names_arrive_as_values(
    ctx: Ctx, machine: Machine, started: list[job.BuildRequest], keep_logging: None
) -> None:
    state = base_state(image_relation(), **{"build-flavor": "--help", "build-network": "-x"})
    ok, request = charm_verdict(ctx, started, state, "build-flavor")
    assert ok and request is not None
    spec = cli_build.spec_of(cli.build_parser().parse_args(_args(request)))
    assert (spec.site.flavor, spec.site.network) == ("--help", "-x")
    assert cli_verdict(_args(request), {}) == (True, "")
