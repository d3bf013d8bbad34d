"""Command line entry point: parses and checks options, dispatches to the commands.

stdout carries only each command's result (JSON, an ID, or the user-data script); progress and
errors go to stderr. Exit codes: 0 success, 1 a build or cloud failure, 2 a usage error.
Script secrets come only from IMAGE_BUILDER_SECRET_<KEY> environment variables, never argv;
a proxy that carries credentials only from IMAGE_BUILDER_PROXY.
SIGTERM or SIGINT during `build` cancels it: every build cleans up, the JSON report lists the
cancelled ones as failed with the error "cancelled", and the exit code is 1.
"""

import argparse
import dataclasses
import functools
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Mapping
from typing import NoReturn, TypeVar

from github_runner_image_builder.cancel import Cancellation
from github_runner_image_builder.cloud import servers
from github_runner_image_builder.cloud.client import Cloud
from github_runner_image_builder.guest import marker, userdata
from github_runner_image_builder.images import distribute, ubuntu_mirror
from image_builder_contract import names, platforms, rules

logger = logging.getLogger(__name__)

PROG = "github-runner-image-builder"
SECRET_ENV_PREFIX = rules.SECRET_ENV_PREFIX
PROXY_ENV = rules.PROXY_ENV
DEFAULT_PREFIX = names.DEFAULT_PREFIX
CLOUD_COMMANDS = ("build", "latest-build-id", "init", "clean", "copy")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smh]?)$")
_RANGE = re.compile(r"^(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?$")
_T = TypeVar("_T")


class UsageError(Exception):
    """Bad options or environment; exit 2 with this message."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print one line naming the problem, and exit 2.

        argparse quotes the offending argument (an unknown option, an ambiguous abbreviation):
        any URL credentials in it are replaced first.
        """
        self.exit(2, f"{self.prog}: error: {rules.redact_urls(message)} (see --help)\n")

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> object:
        # `--flag=--` gives the option the value "--"; argparse before 3.13 takes it for the
        # end-of-options marker and leaves the option empty (a flavor "--" became no flavor).
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            value = self._get_value(action, "--")
            self._check_value(action, value)
            return value
        return super()._get_values(action, arg_strings)


# Option value types: each raises ArgumentTypeError with a message naming the fix.
def _checked(check: Callable[[str], _T]) -> Callable[[str], _T]:
    """Report `check`'s ValueError as a usage error with its own message (argparse drops it)."""

    @functools.wraps(check)
    def parse(value: str) -> _T:
        try:
            return check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    return parse


def _comma_list(value: str) -> list[str]:
    items = rules.split_list(value)
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, got nothing")
    return items


def _optional_list(value: str) -> list[str]:
    # An empty value means none, so a caller can always pass the option.
    return rules.split_list(value)


@_checked
def _bases(value: str) -> tuple[platforms.Base, ...]:
    bases = tuple(dict.fromkeys(platforms.parse_base(v) for v in _comma_list(value)))
    codenames = [b.codename for b in bases]
    for codename in dict.fromkeys(c for c in codenames if codenames.count(c) > 1):
        # Both would publish the same image name.
        raise ValueError(f"{codename} is given twice (with different serials); give it once")
    return bases


@_checked
def _arches(value: str) -> tuple[platforms.Arch, ...]:
    return tuple(dict.fromkeys(platforms.parse_arch(v) for v in _comma_list(value)))


@_checked
def _base(value: str) -> platforms.Base:
    return platforms.parse_base(value)


@_checked
def _arch(value: str) -> platforms.Arch:
    return platforms.parse_arch(value)


@_checked
def _prefix(value: str) -> str:
    names.check_prefix(value)
    return value


def _positive_int(value: str) -> int:
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


def _seconds_range(value: str) -> tuple[float, float]:
    match = _RANGE.match(value.strip())
    low = float(match.group(1)) if match else 0.0
    high = float(match.group(2) or low) if match else 0.0
    if not match or high < low:
        raise argparse.ArgumentTypeError(
            f"expected seconds or a range of seconds MIN-MAX, e.g. 30-60, got {value!r}"
        )
    return low, high


# The contract owns what a valid runner version, script URL and proxy are (the charm uses it).
@_checked
def _runner_version(value: str) -> str:
    return rules.normalize_runner_version(value)


@_checked
def _script_url(value: str) -> str:
    rules.check_script_url(value)
    return value


@_checked
def _proxy(value: str) -> str:
    rules.normalize_proxy(value)
    if rules.proxy_secrets(value):
        raise ValueError(
            f"--proxy {rules.redact_url(value)!r} carries credentials, and every user of "
            f"this machine can read a command line: pass the proxy in {PROXY_ENV} instead"
        )
    return value


@_checked
def _build_id(value: str) -> str:
    rules.check_build_id(value)
    return value


@_checked
def _runner_binary_repo(value: str) -> str:
    # Any architecture that upstream publishes: the (repo, arch) pair is checked per build.
    return platforms.check_runner_repo(value, platforms.parse_arch("x64"))


def build_proxy(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    """Return the build's proxy: --proxy, or IMAGE_BUILDER_PROXY (which may hold credentials)."""
    from_env = env.get(PROXY_ENV, "").strip()
    if from_env and args.proxy:
        raise UsageError(f"give the proxy once: --proxy or {PROXY_ENV}, not both")
    if not from_env:
        given: str | None = args.proxy
        return given
    try:
        rules.normalize_proxy(from_env)
    except ValueError as exc:
        raise UsageError(f"environment variable {PROXY_ENV}: {exc}") from exc
    return from_env


@_checked
def _cloud_images_url(value: str) -> str:
    return ubuntu_mirror.check_url(value)


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


def _add_common(parser: argparse.ArgumentParser, top: bool) -> None:
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


def _add_images_as_for_build(parser: argparse.ArgumentParser) -> None:
    """Add --base, --arch and --prefix, which name the images just as `build`'s do."""
    parser.add_argument("--base", type=_bases, default=_bases("noble"), help="as for build")
    parser.add_argument("--arch", type=_arches, default=_arches("x64"), help="as for build")
    parser.add_argument("--prefix", type=_prefix, default=DEFAULT_PREFIX, help="as for build")


def _add_user_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runner-version",
        type=_runner_version,
        help="GitHub Actions runner version, e.g. 2.321.0 (default: the latest release)",
    )
    parser.add_argument(
        "--script-url",
        type=_script_url,
        help="https URL of a script the builder runs last, as root; its secrets come from "
        f"{SECRET_ENV_PREFIX}<KEY> environment variables, exported as <KEY>",
    )
    parser.add_argument(
        "--proxy",
        type=_proxy,
        help="HTTP(S) proxy the builder uses for apt, snap and downloads, removed before the "
        f"snapshot: host:port or URL; one with credentials only in {PROXY_ENV}",
    )
    parser.add_argument(
        "--runner-binary-repo",
        type=_runner_binary_repo,
        default=platforms.UPSTREAM_RUNNER_REPO,
        help="GitHub repository (owner/name) whose releases carry the runner tarballs "
        f"(default {platforms.UPSTREAM_RUNNER_REPO}; e.g. canonical/github-actions-runner for "
        "s390x and ppc64le)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every command."""
    parser = Parser(
        prog=PROG,
        description="Build GitHub self-hosted runner images on OpenStack.",
        epilog=f"Exit codes: 0 success, 1 a build or cloud failure, 2 a usage error. Script "
        f"secrets: {SECRET_ENV_PREFIX}<KEY> environment variables.",
    )
    _add_common(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _add_common(sub, top=False)
        return sub

    build = command(
        "build",
        "build images for every base x arch in parallel, copy them to the upload clouds, prune; "
        "print a JSON report",
    )
    build.add_argument(
        "--base",
        type=_bases,
        default=_bases("noble"),
        help="Ubuntu bases, comma-separated codenames or versions, each optionally pinned to a "
        "cloud image serial as noble@20260715 (default noble)",
    )
    build.add_argument(
        "--arch",
        type=_arches,
        default=_arches("x64"),
        help="architectures, comma-separated: x64/amd64, arm64/aarch64, s390x, ppc64le, "
        "armhf/arm (default x64)",
    )
    build.add_argument(
        "--prefix",
        type=_prefix,
        default=DEFAULT_PREFIX,
        help=f"name prefix of images and builder resources (default {DEFAULT_PREFIX})",
    )
    build.add_argument(
        "--upload-clouds",
        type=_optional_list,
        default=[],
        help="clouds (clouds.yaml names) that get the image; default: the build cloud only",
    )
    build.add_argument(
        "--keep-revisions",
        type=_positive_int,
        default=5,
        help="revisions of each image to keep per cloud (default 5)",
    )
    build.add_argument(
        "--protect",
        type=_optional_list,
        default=[],
        help="image IDs never to prune (those still published to runner pools)",
    )
    build.add_argument(
        "--flavor", help="builder flavor (default: the smallest with 2 vCPU, 1 GiB, 20 GB)"
    )
    build.add_argument("--network", help="builder network (default: the first with a subnet)")
    _add_user_data_options(build)
    build.add_argument(
        "--timeout",
        type=parse_duration,
        default=parse_duration("60m"),
        help="how long the guest and the snapshot may take, e.g. 3600, 45m, 2h (default 60m)",
    )
    build.add_argument(
        "--cloud-images-url",
        type=_cloud_images_url,
        default=ubuntu_mirror.DEFAULT_URL,
        help=f"Ubuntu cloud images mirror (default {ubuntu_mirror.DEFAULT_URL})",
    )
    build.add_argument(
        "--verify-script-url",
        type=_script_url,
        help="https URL of a smoke test the verification server runs last, as root; its exit "
        "status is the `script` check",
    )
    build.add_argument(
        "--verify-timeout",
        type=parse_duration,
        default=parse_duration("20m"),
        help="how long the verification server may take, e.g. 900, 20m (default 20m)",
    )
    build.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="copy images without booting them first (for clouds without quota for a second "
        "server): the images are marked unverified",
    )
    build.add_argument(
        "--build-id",
        type=_build_id,
        help="tag every server, security group and image this build creates with ID "
        "(1-64 letters, digits or '-'), so that `clean --build-id=ID` finds them at once",
    )
    retry = servers.BootRetry()
    build.add_argument(
        "--boot-retry-delay",
        type=_seconds_range,
        default=retry.delay,
        metavar="SECONDS",
        help=f'pause before booting a server again after "{servers.NO_VALID_HOST}": seconds '
        f"or a range MIN-MAX, picked at random (default {retry.delay[0]:.0f}-"
        f"{retry.delay[1]:.0f}; at most {retry.times} more boots, within --timeout or "
        "--verify-timeout)",
    )

    latest = command(
        "latest-build-id", "print the ID of the newest image of NAME, or nothing when none"
    )
    latest.add_argument("name", metavar="NAME", help="image name, e.g. <prefix>-noble-x64")
    latest.add_argument(
        "--any-status", action="store_true", help="also consider images that are not active"
    )

    init = command(
        "init",
        "fetch and verify the Ubuntu base images and upload them to the build cloud "
        "(build does this itself when one is missing or stale)",
    )
    _add_images_as_for_build(init)
    init.add_argument(
        "--cloud-images-url",
        type=_cloud_images_url,
        default=ubuntu_mirror.DEFAULT_URL,
        help="as for build",
    )

    copy = command(
        "copy",
        "copy the current image of every base x arch from the build cloud to the upload clouds "
        "(no build); print a JSON report like build's",
    )
    _add_images_as_for_build(copy)
    copy.add_argument(
        "--upload-clouds",
        type=_comma_list,
        required=True,
        help="clouds (clouds.yaml names) that get a copy of the build cloud's current image",
    )

    clean = command(
        "clean",
        "delete builder servers, builder security groups and unfinished images left by a "
        "crashed build; print what was deleted as JSON",
    )
    clean.add_argument("--prefix", type=_prefix, default=DEFAULT_PREFIX, help="as for build")
    clean.add_argument(
        "--protect", type=_optional_list, default=[], help="image IDs never to delete"
    )
    clean.add_argument(
        "--older-than",
        type=parse_duration,
        default=None,
        help="only what was created longer ago than this by the cloud's clock, e.g. 3h: safe "
        "while another build with the same prefix runs (default: everything with the prefix)",
    )
    clean.add_argument(
        "--build-id",
        type=_build_id,
        help="only what the build tagged with this ID (build --build-id) created, whatever "
        "its age: for a build known to be dead",
    )
    clean.add_argument(
        "--upload-cloud",
        action="store_true",
        help="this cloud only receives copies (a requirer's project): delete nothing but "
        "unfinished images this CLI uploaded, known by their properties; never a server or "
        "a security group",
    )

    user_data = command(
        "user-data",
        "print the cloud-init user-data a build would boot with (needs no cloud)",
    )
    user_data.add_argument("--base", type=_base, default=_base("noble"), help="Ubuntu base")
    user_data.add_argument("--arch", type=_arch, default=_arch("x64"), help="architecture")
    _add_user_data_options(user_data)
    user_data.add_argument(
        "--show-secrets",
        action="store_true",
        help="print the script secrets' values and the proxy's credentials; by default each "
        "secret is replaced by <redacted:KEY> and the credentials by ***",
    )
    return parser


def user_data_options(
    args: argparse.Namespace,
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
            runner_version=args.runner_version,
            script_url=args.script_url,
            script_secrets=secrets,
            proxy=proxy,
            runner_binary_repo=args.runner_binary_repo,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _build(args: argparse.Namespace, env: Mapping[str, str], deps: "Deps") -> int:
    from github_runner_image_builder.pipeline import builds as build  # noqa: PLC0415
    from github_runner_image_builder.pipeline import steps  # noqa: PLC0415 - only for build

    secrets = script_secrets(env)
    proxy = build_proxy(args, env)
    # Every build's user-data is rendered once before any cloud is touched: bad options or a
    # script too long for Nova are usage errors, not failed builds.
    for base in args.base:
        for arch in args.arch:
            _render(deps, user_data_options(args, base, arch, secrets, proxy))
    options = steps.BuildOptions(
        cloud=args.os_cloud,
        bases=args.base,
        arches=args.arch,
        prefix=args.prefix,
        upload_clouds=tuple(dict.fromkeys(args.upload_clouds)),
        keep_revisions=args.keep_revisions,
        protect=frozenset(args.protect),
        flavor=args.flavor,
        network=args.network,
        runner_version=args.runner_version,
        script_url=args.script_url,
        script_secrets=secrets,
        proxy=proxy,
        runner_binary_repo=args.runner_binary_repo,
        timeout=args.timeout,
        cloud_images_url=args.cloud_images_url,
        verify=args.verify,
        verify_script_url=args.verify_script_url,
        verify_timeout=args.verify_timeout,
        boot_retry=servers.BootRetry(delay=args.boot_retry_delay),
        build_id=args.build_id,
    )
    if not args.verify:
        logger.warning("verification is off (--no-verify): the images built are unverified")
    cancellation = Cancellation()

    def cancel(signum: int, _frame: object) -> None:
        if not cancellation.requested:
            logger.warning(
                "%s: cancelling every build; cleaning up before exit",
                signal.Signals(signum).name,
            )
        cancellation.cancel()

    previous = {sig: signal.signal(sig, cancel) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        report = build.run_builds(
            options, deps.render, deps.open_cloud, deps.sleep, cancellation=cancellation
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(report.to_json())
    return report.exit_code


def _latest(args: argparse.Namespace, env: Mapping[str, str], deps: "Deps") -> int:
    from github_runner_image_builder.images import revisions  # noqa: PLC0415

    try:
        images = deps.open_cloud(args.os_cloud).images(args.name)
    except Exception as exc:
        logger.error("cannot list images in cloud %s: %s", args.os_cloud, exc)
        return 1
    found = revisions.latest([i.record() for i in images], args.name, args.any_status)
    if found:
        print(found)
    return 0


def _init(args: argparse.Namespace, env: Mapping[str, str], deps: "Deps") -> int:
    from github_runner_image_builder.images import baseimage  # noqa: PLC0415

    cloud = deps.open_cloud(args.os_cloud)
    result: dict[str, list[dict[str, object]]] = {"base_images": [], "failures": []}
    for base in args.base:
        for arch in args.arch:
            try:
                image_id, fetched = baseimage.ensure_base_image(
                    cloud, args.cloud_images_url, args.prefix, base, arch
                )
            except Exception as exc:
                logger.error("%s-%s base image: %s", base.codename, arch.github, exc)
                result["failures"].append(
                    {"base": base.codename, "arch": arch.github, "error": str(exc)}
                )
                continue
            result["base_images"].append(
                {
                    "name": names.base_image_name(args.prefix, base, arch),
                    "base": base.codename,
                    "arch": arch.github,
                    "id": image_id,
                    "fetched": fetched,
                }
            )
    print(json.dumps(result, indent=2))
    return 1 if result["failures"] else 0


def _clean(args: argparse.Namespace, env: Mapping[str, str], deps: "Deps") -> int:
    from github_runner_image_builder.cloud import sweep as clean  # noqa: PLC0415

    try:
        done = clean.clean(
            deps.open_cloud(args.os_cloud),
            args.prefix,
            args.protect,
            deps.sleep,
            older_than=args.older_than,
            upload_cloud=args.upload_cloud,
            build_id=args.build_id,
        )
    except Exception as exc:
        logger.error("cannot clean cloud %s: %s", args.os_cloud, exc)
        return 1
    print(json.dumps(dataclasses.asdict(done), indent=2))
    return 1 if done.errors else 0


def _render(deps: "Deps", options: userdata.UserDataOptions) -> str:
    try:
        return deps.render(options)
    except ValueError as exc:  # e.g. longer than Nova accepts
        raise UsageError(str(exc)) from exc


def _user_data(args: argparse.Namespace, env: Mapping[str, str], deps: "Deps") -> int:
    secrets = script_secrets(env)
    proxy = build_proxy(args, env)
    if not args.show_secrets:
        # A script printed for debugging ends up in terminals and tickets: keep values out.
        secrets = {key: f"<redacted:{key}>" for key in secrets}
        proxy = rules.redact_url(proxy) if proxy else proxy
    options = user_data_options(args, args.base, args.arch, secrets, proxy)
    sys.stdout.write(_render(deps, options))
    return 0


@dataclasses.dataclass(frozen=True)
class Deps:
    """What the commands use from outside: replaced by fakes in tests."""

    open_cloud: Callable[[str], Cloud] = Cloud
    render: Callable[[userdata.UserDataOptions], str] = userdata.render_user_data
    sleep: Callable[[float], None] = time.sleep


HANDLERS: dict[str, Callable[[argparse.Namespace, Mapping[str, str], Deps], int]] = {
    "build": _build,
    "latest-build-id": _latest,
    "init": _init,
    "clean": _clean,
    "copy": lambda args, env, deps: distribute.command(args, deps.open_cloud),
    "user-data": _user_data,
}


def main(
    argv: list[str] | None = None,
    env: Mapping[str, str] | None = None,
    deps: Deps | None = None,
) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in CLOUD_COMMANDS and not args.os_cloud:
        parser.error(f"{args.command} needs --os-cloud NAME (a cloud in clouds.yaml)")
    from github_runner_image_builder import logs  # noqa: PLC0415

    try:
        logs.configure(args.log_level, args.log_file)
    except OSError as exc:
        parser.error(f"--log-file {args.log_file}: {exc.strerror or exc}")
    try:
        return HANDLERS[args.command](args, os.environ if env is None else env, deps or Deps())
    except UsageError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    sys.exit(main())
