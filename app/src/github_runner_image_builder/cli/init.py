"""The `init` command: the Ubuntu base images, fetched, checked and uploaded ahead of builds."""

import argparse
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from github_runner_image_builder.cli import options as opt
from github_runner_image_builder.images import baseimage, ubuntu_mirror
from image_builder_contract import names

if TYPE_CHECKING:
    from github_runner_image_builder.cli import Deps

logger = logging.getLogger(__name__)


def add_parser(command: opt.CommandAdder) -> None:
    """Add `init` and its options."""
    init = command(
        "init",
        "fetch and verify the Ubuntu base images and upload them to the build cloud "
        "(build does this itself when one is missing or stale)",
    )
    opt.add_images_as_for_build(init)
    init.add_argument(
        "--cloud-images-url",
        type=opt.cloud_images_url,
        default=ubuntu_mirror.DEFAULT_URL,
        help="as for build",
    )


def run(args: argparse.Namespace, env: Mapping[str, str], deps: "Deps") -> int:
    """Make sure each base image is current; print them as JSON; exit 1 when any failed."""
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
