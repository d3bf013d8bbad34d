"""The `copy` command: the current image of each (base, arch), from the build cloud to clouds.

A new or lagging cloud gets the image every other cloud already has, without a new build. The
source is the newest active image of that name in the build cloud that this CLI built (it
carries revisions.BUILT_BY_US): never another cloud's, whose owner could serve other bytes
under that name. The copy streams through `copying` and is checked against the source; its
JSON report has `build`'s shape, so a caller reads both the same way. No image of the name in
the build cloud is the failure step names.COPY_NO_SOURCE: the caller then has to build.
"""

import logging
from collections.abc import Mapping, Sequence

from github_runner_image_builder.cancel import Cancellation
from github_runner_image_builder.cloud.client import Cloud, ImageInfo
from github_runner_image_builder.images import copying, properties, revisions
from image_builder_contract import names, platforms
from image_builder_contract.report import Failure, ImageResult, Report

logger = logging.getLogger(__name__)


def source_image(images: Sequence[ImageInfo], name: str) -> ImageInfo | None:
    """Return the newest active image called `name` that we built, if any."""
    ours = [i for i in images if i.record().ours]
    newest = revisions.latest([i.record() for i in ours], name)
    return next((i for i in ours if i.id == newest), None)


def own_properties(image: ImageInfo) -> dict[str, str]:
    """Return the properties a copy of our image carries (not Glance's own bookkeeping)."""
    return properties.carried(image.properties)


def _copy_one(
    build_cloud: Cloud,
    targets: Mapping[str, Cloud],
    name: str,
    platform: tuple[platforms.Base, platforms.Arch],
    cancellation: Cancellation,
) -> Report:
    """Copy the current image called `name` of (base, arch) to every target."""
    base, arch = platform
    report = Report()

    def fail(step: str, error: str, clouds: Sequence[str]) -> Report:
        for cloud in clouds:
            logger.error("%s %s failed in %s: %s", name, step, cloud, error)
            report.failures.append(Failure(base.codename, arch.github, cloud, step, error))
        return report

    if cancellation.requested:
        return fail("copy", "cancelled", list(targets))
    try:
        source = source_image(build_cloud.images(name), name)
    except Exception as exc:
        return fail("source", f"cannot list images in the build cloud: {exc}", list(targets))
    if source is None:
        missing = f"no image {name} of ours in the build cloud"
        return fail(names.COPY_NO_SOURCE, missing, list(targets))
    logger.info("%s: copying %s to %s", name, source.id, ", ".join(targets))
    results = copying.copy_image(
        build_cloud, source, targets, properties=own_properties(source), cancellation=cancellation
    )
    for cloud, result in results.items():
        if isinstance(result, ImageInfo):
            report.images.append(ImageResult(name, base.codename, arch.github, cloud, result.id))
        else:
            fail("copy", str(result) or type(result).__name__, [cloud])
    return report


def copy_current(
    build_cloud: Cloud,
    targets: Mapping[str, Cloud],
    prefix: str,
    platforms_wanted: Sequence[tuple[platforms.Base, platforms.Arch]],
    cancellation: Cancellation,
) -> Report:
    """Copy the current image of every (base, arch) to every target; report each outcome."""
    report = Report()
    for base, arch in platforms_wanted:
        name = names.image_name(prefix, base, arch)
        one = _copy_one(build_cloud, targets, name, (base, arch), cancellation)
        report.images += one.images
        report.failures += one.failures
    return report
