"""The `user-data` command: the builder's cloud-init script, for people (needs no cloud)."""

import argparse
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from github_runner_image_builder.cli import options as opt
from image_builder_contract import rules
from image_builder_contract.spec import ImageSpec

if TYPE_CHECKING:
    from github_runner_image_builder.cli import Deps


def add_parser(command: opt.CommandAdder) -> None:
    """Add `user-data` and its options."""
    user_data = command(
        "user-data",
        "print the cloud-init user-data a build would boot with (needs no cloud)",
    )
    user_data.add_argument("--base", type=opt.base, default=opt.base("noble"), help="Ubuntu base")
    user_data.add_argument("--arch", type=opt.arch, default=opt.arch("x64"), help="architecture")
    opt.add_user_data_options(user_data)
    user_data.add_argument(
        "--show-secrets",
        action="store_true",
        help="print the script secrets' values and the proxy's credentials; by default each "
        "secret is replaced by <redacted:KEY> and the credentials by ***",
    )


def run(args: argparse.Namespace, env: Mapping[str, str], deps: "Deps") -> int:
    """Print the rendered script; exit 2 when the options cannot make one."""
    secrets = opt.script_secrets(env)
    proxy = opt.build_proxy(args, env)
    if not args.show_secrets:
        # A script printed for debugging ends up in terminals and tickets: keep values out.
        secrets = {key: f"<redacted:{key}>" for key in secrets}
        proxy = rules.redact_url(proxy) if proxy else proxy
    image = ImageSpec(
        runner_version=args.runner_version,
        script_url=args.script_url,
        runner_binary_repo=args.runner_binary_repo,
    )
    options = opt.user_data_options(image, args.base, args.arch, secrets, proxy)
    sys.stdout.write(opt.render(deps.render, options))
    return 0
