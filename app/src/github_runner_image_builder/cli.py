"""Command line entry point: parses options and dispatches to the commands."""

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every command."""
    parser = argparse.ArgumentParser(
        prog="github-runner-image-builder",
        description="Build GitHub self-hosted runner images on OpenStack.",
    )
    parser.add_argument("--os-cloud", help="cloud name in clouds.yaml (the build cloud)")
    parser.add_argument("--log-level", default="INFO", help="log level (default INFO)")
    parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    build_parser().parse_args(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
