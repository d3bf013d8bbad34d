"""What every command shares: option types that check values, the common options, secrets.

A bad value is a usage error naming the fix; secrets come from the environment, never argv;
SIGTERM or SIGINT cancels a command that takes long.
"""

import argparse
import contextlib
import functools
import logging
import re
import signal
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from github_runner_image_builder.cancel import Cancellation
from github_runner_image_builder.guest import marker, userdata
from github_runner_image_builder.images import ubuntu_mirror
from image_builder_contract import names, platforms, rules, spec

logger = logging.getLogger(__name__)

SECRET_ENV_PREFIX = rules.SECRET_ENV_PREFIX
PROXY_ENV = rules.PROXY_ENV
DEFAULT_PREFIX = names.DEFAULT_PREFIX
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smh]?)$")
_RANGE = re.compile(r"^(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?$")
_T = TypeVar("_T")


class UsageError(Exception):
    """Bad options or environment; exit 2 with this message."""


def checked(check: Callable[[str], _T]) -> Callable[[str], _T]:
    """Report `check`'s ValueError as a usage error with its own message (argparse drops it)."""

    @functools.wraps(check)
    def parse(value: str) -> _T:
        try:
            return check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    return parse


def comma_list(value: str) -> list[str]:
    """Return the items of a comma-separated list; at least one."""
    items = rules.split_list(value)
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, got nothing")
    return items


def optional_list(value: str) -> list[str]:
    """Return the items of a comma-separated list; an empty value means none."""
    return rules.split_list(value)


@checked
def bases(value: str) -> tuple[platforms.Base, ...]:
    """Return the bases of a comma-separated list, once each."""
    return spec.parse_bases(comma_list(value))


@checked
def arches(value: str) -> tuple[platforms.Arch, ...]:
    """Return the architectures of a comma-separated list, once each."""
    return tuple(dict.fromkeys(platforms.parse_arch(v) for v in comma_list(value)))


base = checked(platforms.parse_base)
arch = checked(platforms.parse_arch)


@checked
def prefix(value: str) -> str:
    """Return a name prefix that can start every resource name."""
    names.check_prefix(value)
    return value


def positive_int(value: str) -> int:
    """Return a whole number of at least 1."""
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {value!r}")
    return int(value)


def parse_duration(value: str) -> float:
    """Return seconds for '90', '90s', '45m' or '2h'; raise ArgumentTypeError otherwise."""
    match = _DURATION.match(value.strip())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"duration {value!r} must be a positive number of seconds, or end in s, m or h"
        )
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def seconds_range(value: str) -> tuple[float, float]:
    """Return (low, high) seconds of '30' or '30-60'."""
    match = _RANGE.match(value.strip())
    low = float(match.group(1)) if match else 0.0
    high = float(match.group(2) or low) if match else 0.0
    if not match or high < low:
        raise argparse.ArgumentTypeError(
            f"expected seconds or a range of seconds MIN-MAX, e.g. 30-60, got {value!r}"
        )
    return low, high


# The contract owns what a valid runner version, script URL and proxy are (the charm uses it).
runner_version = checked(rules.normalize_runner_version)


@checked
def script_url(value: str) -> str:
    """Return an https URL the contract accepts for a script."""
    rules.check_script_url(value)
    return value


@checked
def proxy(value: str) -> str:
    """Return a proxy without credentials (one with them belongs in PROXY_ENV)."""
    rules.normalize_proxy(value)
    if rules.proxy_secrets(value):
        raise ValueError(
            f"--proxy {rules.redact_url(value)!r} carries credentials, and every user of "
            f"this machine can read a command line: pass the proxy in {PROXY_ENV} instead"
        )
    return value


@checked
def build_id(value: str) -> str:
    """Return a build ID the contract accepts."""
    rules.check_build_id(value)
    return value


@checked
def runner_binary_repo(value: str) -> str:
    """Return a GitHub owner/name; any architecture upstream publishes (checked per build)."""
    return platforms.check_runner_repo(value, platforms.parse_arch("x64"))


cloud_images_url = checked(ubuntu_mirror.check_url)


def build_proxy(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    """Return the build's proxy: --proxy, or IMAGE_BUILDER_PROXY (which may hold credentials)."""
    given: str | None = getattr(args, "proxy", None)
    from_env = env.get(PROXY_ENV, "").strip()
    if from_env and given:
        raise UsageError(f"give the proxy once: --proxy or {PROXY_ENV}, not both")
    if not from_env:
        return given
    try:
        rules.normalize_proxy(from_env)
    except ValueError as exc:
        raise UsageError(f"environment variable {PROXY_ENV}: {exc}") from exc
    return from_env


def script_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """Return {KEY: value} from IMAGE_BUILDER_SECRET_<KEY> variables; raise UsageError."""
    secrets = {}
    for name, value in env.items():
        if name.startswith(SECRET_ENV_PREFIX):
            key = name[len(SECRET_ENV_PREFIX) :]
            problem = rules.secret_name_problem(key)
            if problem:
                raise UsageError(f"environment variable {name}: {key!r} {problem}")
            secrets[key] = value
    return secrets


def add_common(parser: argparse.ArgumentParser, top: bool) -> None:
    """Add --os-cloud, --log-level and --log-file (on the top parser and every command)."""
    # On subcommands the defaults are suppressed so they do not overwrite the top-level ones.
    default: Callable[[object], object] = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    parser.add_argument(
        "--os-cloud",
        default=default(None),
        help="cloud name in clouds.yaml: the build cloud (needed by commands that use a cloud)",
    )
    parser.add_argument(
        "--log-level",
        default=default("INFO"),
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level on stderr and in --log-file (default INFO)",
    )
    parser.add_argument(
        "--log-file", default=default(None), help="also append log lines to this file"
    )


def add_images_as_for_build(parser: argparse.ArgumentParser) -> None:
    """Add --base, --arch and --prefix, which name the images just as `build`'s do."""
    parser.add_argument("--base", type=bases, default=bases("noble"), help="as for build")
    parser.add_argument("--arch", type=arches, default=arches("x64"), help="as for build")
    parser.add_argument("--prefix", type=prefix, default=DEFAULT_PREFIX, help="as for build")


def add_user_data_options(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """Add what shapes the builder's user-data; `suppress`: no defaults (the spec has them)."""
    repo_default = argparse.SUPPRESS if suppress else platforms.UPSTREAM_RUNNER_REPO
    none = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--runner-version",
        type=runner_version,
        default=none,
        help="GitHub Actions runner version, e.g. 2.321.0 (default: the latest release)",
    )
    parser.add_argument(
        "--script-url",
        type=script_url,
        default=none,
        help="https URL of a script the builder runs last, as root; its secrets come from "
        f"{SECRET_ENV_PREFIX}<KEY> environment variables, exported as <KEY>",
    )
    parser.add_argument(
        "--proxy",
        type=proxy,
        default=none,
        help="HTTP(S) proxy the builder uses for apt, snap and downloads, removed before the "
        f"snapshot: host:port or URL; one with credentials only in {PROXY_ENV}",
    )
    parser.add_argument(
        "--runner-binary-repo",
        type=runner_binary_repo,
        default=repo_default,
        help="GitHub repository (owner/name) whose releases carry the runner tarballs "
        f"(default {platforms.UPSTREAM_RUNNER_REPO}; e.g. canonical/github-actions-runner for "
        "s390x and ppc64le)",
    )


def user_data_options(
    image: spec.ImageSpec,
    base: platforms.Base,
    arch: platforms.Arch,
    secrets: Mapping[str, str],
    proxy: str | None,
) -> userdata.UserDataOptions:
    """Return the user-data options of one build; raise UsageError when they are unusable."""
    try:
        return userdata.UserDataOptions(
            base=base,
            arch=arch,
            nonce=marker.new_nonce(),
            runner_version=image.runner_version,
            script_url=image.script_url,
            script_secrets=secrets,
            proxy=proxy,
            runner_binary_repo=image.runner_binary_repo,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def render(
    renderer: Callable[[userdata.UserDataOptions], str], options: userdata.UserDataOptions
) -> str:
    """Render user-data; a script too long for Nova (and the like) is a usage error."""
    try:
        return renderer(options)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


@contextlib.contextmanager
def cancelled_by_signals(what: str) -> Iterator[Cancellation]:
    """Yield a cancellation that SIGTERM or SIGINT sets while the block runs."""
    cancellation = Cancellation()

    def cancel(signum: int, _frame: object) -> None:
        if not cancellation.requested:
            logger.warning("%s: %s", signal.Signals(signum).name, what)
        cancellation.cancel()

    previous = {sig: signal.signal(sig, cancel) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield cancellation
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# Adds one command's parser (name, help) with the common options: see `cli.build_parser`.
CommandAdder = Callable[[str, str], argparse.ArgumentParser]
