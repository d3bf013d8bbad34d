"""The `clean` command: what a crashed build left (servers, groups, unfinished images) goes."""

import argparse
import dataclasses
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from github_runner_image_builder.cli import options as opt
from github_runner_image_builder.cloud import sweep

if TYPE_CHECKING:
    from github_runner_image_builder.cli import Deps

logger = logging.getLogger(__name__)


def add_parser(command: opt.CommandAdder) -> None:
    """Add `clean` and its options."""
    clean = command(
        "clean",
        "delete builder servers, builder security groups and unfinished images left by a "
        "crashed build; print what was deleted as JSON",
    )
    clean.add_argument(
        "--prefix", type=opt.prefix, default=opt.DEFAULT_PREFIX, help="as for build"
    )
    clean.add_argument(
        "--protect", type=opt.optional_list, default=[], help="image IDs never to delete"
    )
    clean.add_argument(
        "--older-than",
        type=opt.parse_duration,
        default=None,
        help="only what was created longer ago than this by the cloud's clock, e.g. 3h: safe "
        "while another build with the same prefix runs (default: everything with the prefix)",
    )
    clean.add_argument(
        "--build-id",
        type=opt.build_id,
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


def run(args: argparse.Namespace, env: Mapping[str, str], deps: "Deps") -> int:
    """Delete the leftovers; print what went as JSON; exit 1 when anything could not go."""
    try:
        done = sweep.clean(
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
