"""The `latest-build-id` command: the ID of the newest image of a name, or nothing."""

import argparse
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from github_runner_image_builder.cli import options as opt
from github_runner_image_builder.images import revisions

if TYPE_CHECKING:
    from github_runner_image_builder.cli import Deps

logger = logging.getLogger(__name__)


def add_parser(command: opt.CommandAdder) -> None:
    """Add `latest-build-id` and its options."""
    latest = command(
        "latest-build-id", "print the ID of the newest image of NAME, or nothing when none"
    )
    latest.add_argument("name", metavar="NAME", help="image name, e.g. <prefix>-noble-x64")
    latest.add_argument(
        "--any-status", action="store_true", help="also consider images that are not active"
    )


def run(args: argparse.Namespace, env: Mapping[str, str], deps: "Deps") -> int:
    """Print the newest image's ID (nothing when none); exit 1 when the cloud cannot list."""
    try:
        images = deps.open_cloud(args.os_cloud).images(args.name)
    except Exception as exc:
        logger.error("cannot list images in cloud %s: %s", args.os_cloud, exc)
        return 1
    found = revisions.latest([i.record() for i in images], args.name, args.any_status)
    if found:
        print(found)
    return 0
