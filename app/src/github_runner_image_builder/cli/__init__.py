"""Command line entry point: the parser of every command, dispatch, exit codes.

One module per command, its parser beside its handler. stdout carries only each command's
result (JSON, an ID, or the user-data script); progress and errors go to stderr. Exit codes:
0 success, 1 a build or cloud failure, 2 a usage error. Script secrets come only from
IMAGE_BUILDER_SECRET_<KEY> environment variables, never argv; a proxy that carries credentials
only from IMAGE_BUILDER_PROXY.
"""

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import NoReturn, Protocol

from github_runner_image_builder.cli import build, clean, copy, init, latest_build_id, user_data
from github_runner_image_builder.cli import options as opt
from github_runner_image_builder.cli.options import parse_duration
from github_runner_image_builder.cloud.client import Cloud
from github_runner_image_builder.guest import userdata
from image_builder_contract import rules

PROG = "github-runner-image-builder"
SECRET_ENV_PREFIX = rules.SECRET_ENV_PREFIX
PROXY_ENV = rules.PROXY_ENV
CLOUD_COMMANDS = ("build", "latest-build-id", "init", "clean", "copy")


class Command(Protocol):
    """A command's module: its parser beside its handler."""

    def add_parser(self, command: opt.CommandAdder) -> None:
        """Add the command's parser through `command` (name, help)."""

    def run(self, args: argparse.Namespace, env: Mapping[str, str], deps: "Deps") -> int:
        """Run the command; return the exit code; raise UsageError for a bad option."""


COMMANDS: dict[str, Command] = {
    "build": build,
    "latest-build-id": latest_build_id,
    "init": init,
    "clean": clean,
    "copy": copy,
    "user-data": user_data,
}


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


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every command."""
    parser = Parser(
        prog=PROG,
        description="Build GitHub self-hosted runner images on OpenStack.",
        epilog=f"Exit codes: 0 success, 1 a build or cloud failure, 2 a usage error. Script "
        f"secrets: {SECRET_ENV_PREFIX}<KEY> environment variables.",
    )
    opt.add_common(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        opt.add_common(sub, top=False)
        return sub

    for module in COMMANDS.values():
        module.add_parser(command)
    return parser


@dataclasses.dataclass(frozen=True)
class Deps:
    """What the commands use from outside: replaced by fakes in tests."""

    open_cloud: Callable[[str], Cloud] = Cloud
    render: Callable[[userdata.UserDataOptions], str] = userdata.render_user_data
    sleep: Callable[[float], None] = time.sleep


def main(
    argv: list[str] | None = None,
    env: Mapping[str, str] | None = None,
    deps: Deps | None = None,
) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from_spec = args.command == "build" and getattr(args, "spec", None)
    if args.command in CLOUD_COMMANDS and not args.os_cloud and not from_spec:
        parser.error(f"{args.command} needs --os-cloud NAME (a cloud in clouds.yaml)")
    from github_runner_image_builder import logs  # noqa: PLC0415

    try:
        logs.configure(args.log_level, args.log_file)
    except OSError as exc:
        parser.error(f"--log-file {args.log_file}: {exc.strerror or exc}")
    try:
        return COMMANDS[args.command].run(args, os.environ if env is None else env, deps or Deps())
    except opt.UsageError as exc:
        parser.error(str(exc))


__all__ = ["PROXY_ENV", "Deps", "build_parser", "main", "parse_duration"]

if __name__ == "__main__":
    sys.exit(main())
