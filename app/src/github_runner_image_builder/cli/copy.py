"""The `copy` command: the build cloud's current images to the upload clouds (no build).

SIGTERM or SIGINT cancels: a copy under way fails and is deleted (see `images.copying`).
"""

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING

from github_runner_image_builder.cli import options as opt
from github_runner_image_builder.images import distribute

if TYPE_CHECKING:
    from github_runner_image_builder.cli import Deps


def add_parser(command: opt.CommandAdder) -> None:
    """Add `copy` and its options."""
    copy = command(
        "copy",
        "copy the current image of every base x arch from the build cloud to the upload clouds "
        "(no build); print a JSON report like build's",
    )
    opt.add_images_as_for_build(copy)
    copy.add_argument(
        "--upload-clouds",
        type=opt.comma_list,
        required=True,
        help="clouds (clouds.yaml names) that get a copy of the build cloud's current image",
    )


def run(args: argparse.Namespace, env: Mapping[str, str], deps: "Deps") -> int:
    """Copy; print the JSON report; exit 1 when anything failed."""
    open_cloud = deps.open_cloud
    with opt.cancelled_by_signals("cancelling the copies") as cancellation:
        # Every upload cloud but the build cloud itself.
        targets = {
            name: open_cloud(name)
            for name in dict.fromkeys(args.upload_clouds)
            if name != args.os_cloud
        }
        wanted = [(base, arch) for base in args.base for arch in args.arch]
        report = distribute.copy_current(
            open_cloud(args.os_cloud), targets, args.prefix, wanted, cancellation
        )
    print(report.to_json())
    return report.exit_code
