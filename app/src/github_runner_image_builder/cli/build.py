"""The `build` command: flags or a spec file (or both: flags win) make one build spec.

Each (base, arch) is one pipeline, all in parallel; the report is one JSON document on stdout.
SIGTERM or SIGINT cancels: every build cleans up and the report lists the cancelled ones as
failed with the error "cancelled".
"""

import argparse
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pydantic

from github_runner_image_builder.cli import options as opt
from github_runner_image_builder.cloud import servers
from github_runner_image_builder.pipeline.steps import GuestSecrets
from image_builder_contract import names
from image_builder_contract.spec import DEFAULT_CLOUD_IMAGES_URL, BuildSpec

if TYPE_CHECKING:
    from github_runner_image_builder.cli import Deps

logger = logging.getLogger(__name__)

# Each flag of `build` (its argparse dest) and the part and field of the spec it fills: the one
# place where the command line meets the spec.
FLAGS: dict[str, tuple[str, str]] = {
    "os_cloud": ("site", "cloud"),
    "base": ("image", "bases"),
    "arch": ("image", "arches"),
    "prefix": ("image", "prefix"),
    "runner_version": ("image", "runner_version"),
    "runner_binary_repo": ("image", "runner_binary_repo"),
    "script_url": ("image", "script_url"),
    "cloud_images_url": ("image", "cloud_images_url"),
    "flavor": ("site", "flavor"),
    "network": ("site", "network"),
    "timeout": ("site", "timeout"),
    "boot_retry_delay": ("site", "boot_retry_delay"),
    "build_id": ("site", "build_id"),
    "verify": ("verify", "enabled"),
    "verify_script_url": ("verify", "script_url"),
    "verify_timeout": ("verify", "timeout"),
    "upload_clouds": ("upload", "clouds"),
    "keep_revisions": ("prune", "keep_revisions"),
    "protect": ("prune", "protect"),
}


def add_parser(command: "opt.CommandAdder") -> None:
    """Add `build` and its options; none has a default here: the spec's are the defaults."""
    build = command(
        "build",
        "build images for every base x arch in parallel, copy them to the upload clouds, prune; "
        "print a JSON report",
    )
    add = build.add_argument
    unset = argparse.SUPPRESS
    add(
        "--spec",
        default=unset,
        metavar="FILE",
        help="a build spec (JSON, as the charm writes it); any flag given too wins over it",
    )
    add(
        "--base",
        type=opt.bases,
        default=unset,
        help="Ubuntu bases, comma-separated codenames or versions, each optionally pinned to a "
        "cloud image serial as noble@20260715 (default noble)",
    )
    add(
        "--arch",
        type=opt.arches,
        default=unset,
        help="architectures, comma-separated: x64/amd64, arm64/aarch64, s390x, ppc64le, "
        "armhf/arm (default x64)",
    )
    add(
        "--prefix",
        type=opt.prefix,
        default=unset,
        help=f"name prefix of images and builder resources (default {names.DEFAULT_PREFIX})",
    )
    add(
        "--upload-clouds",
        type=opt.optional_list,
        default=unset,
        help="clouds (clouds.yaml names) that get the image; default: the build cloud only",
    )
    add(
        "--keep-revisions",
        type=opt.positive_int,
        default=unset,
        help="revisions of each image to keep per cloud (default 5)",
    )
    add(
        "--protect",
        type=opt.optional_list,
        default=unset,
        help="image IDs never to prune (those still published to runner pools)",
    )
    add(
        "--flavor",
        default=unset,
        help="builder flavor (default: the smallest with 2 vCPU, 1 GiB, 20 GB)",
    )
    add("--network", default=unset, help="builder network (default: the first with a subnet)")
    opt.add_user_data_options(build, suppress=True)
    add(
        "--timeout",
        type=opt.parse_duration,
        default=unset,
        help="how long the guest and the snapshot may take, e.g. 3600, 45m, 2h (default 60m)",
    )
    add(
        "--cloud-images-url",
        type=opt.cloud_images_url,
        default=unset,
        help=f"Ubuntu cloud images mirror (default {DEFAULT_CLOUD_IMAGES_URL})",
    )
    add(
        "--verify-script-url",
        type=opt.script_url,
        default=unset,
        help="https URL of a smoke test the verification server runs last, as root; its exit "
        "status is the `script` check",
    )
    add(
        "--verify-timeout",
        type=opt.parse_duration,
        default=unset,
        help="how long the verification server may take, e.g. 900, 20m (default 20m)",
    )
    add(
        "--no-verify",
        dest="verify",
        action="store_false",
        default=unset,
        help="copy images without booting them first (for clouds without quota for a second "
        "server): the images are marked unverified",
    )
    add(
        "--build-id",
        type=opt.build_id,
        default=unset,
        help="tag every server, security group and image this build creates with ID "
        "(1-64 letters, digits or '-'), so that `clean --build-id=ID` finds them at once",
    )
    retry = servers.BootRetry()
    add(
        "--boot-retry-delay",
        type=opt.seconds_range,
        default=unset,
        metavar="SECONDS",
        help=f'pause before booting a server again after "{servers.NO_VALID_HOST}": seconds '
        f"or a range MIN-MAX, picked at random (default {retry.delay[0]:.0f}-"
        f"{retry.delay[1]:.0f}; at most {retry.times} more boots, within --timeout or "
        "--verify-timeout)",
    )


def spec_of(args: argparse.Namespace) -> BuildSpec:
    """Return the build spec: the spec file's, with every flag given written over it."""
    document: dict[str, dict[str, object]] = {}
    if path := getattr(args, "spec", None):
        try:
            loaded = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise opt.UsageError(f"--spec {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise opt.UsageError(f"--spec {path}: expected a JSON object")
        document = loaded
    for dest, (part, field) in FLAGS.items():
        if getattr(args, dest, None) is not None:
            section = document.setdefault(part, {})
            if not isinstance(section, dict):
                raise opt.UsageError(f"--spec {path}: {part} must be an object")
            section[field] = getattr(args, dest)
    try:
        return BuildSpec.model_validate(document)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'spec'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise opt.UsageError(f"the build spec is not valid: {problems}") from exc


def run(args: argparse.Namespace, env: Mapping[str, str], deps: "Deps") -> int:
    """Build; print the JSON report; exit 1 when anything failed."""
    from github_runner_image_builder.pipeline import builds  # noqa: PLC0415 - only for build

    spec = spec_of(args)
    secrets = GuestSecrets(opt.script_secrets(env), opt.build_proxy(args, env))
    # Every build's user-data is rendered once before any cloud is touched: bad options or a
    # script too long for Nova are usage errors, not failed builds.
    for base in spec.image.bases:
        for arch in spec.image.arches:
            options = opt.user_data_options(
                spec.image, base, arch, secrets.script_secrets, secrets.proxy
            )
            opt.render(deps.render, options)
    if not spec.verify.enabled:
        logger.warning("verification is off (--no-verify): the images built are unverified")
    with opt.cancelled_by_signals("cancelling every build; cleaning up before exit") as cancel:
        report = builds.run_builds(
            spec, secrets, deps.render, deps.open_cloud, deps.sleep, cancellation=cancel
        )
    print(report.to_json())
    return report.exit_code
