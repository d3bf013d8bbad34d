"""Which job the leader asks for: the build request from the config, and which clouds to serve.

Pure decisions (no Juju, no machine): the charm gathers the inputs and starts what these return.
`build_request` is the one place that turns a BuildConfig into a job.BuildRequest. A requirer
cloud that lacks images gets a job (lookups, then a copy from the build cloud) at most every
SERVE_INTERVAL, however often its relation changes.
"""

import datetime
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence

from catalogue import Catalogue
from config import BuildConfig
from image_builder_contract import names, platforms, text
from image_builder_contract.spec import (
    BuildSpec,
    ImageSpec,
    PruneSpec,
    SiteSpec,
    UploadSpec,
    VerifySpec,
    parse_bases,
)
from job import BUILD_CLOUD, BUILD_TIMEOUT, BuildRequest, Lookup

logger = logging.getLogger(__name__)

# A requirer whose cloud refuses our copies cannot keep the builder busy: its cloud gets one
# job at most this often. The schedule and the `run` action serve it regardless.
SERVE_INTERVAL = datetime.timedelta(minutes=15)


def build_request(
    config: BuildConfig,
    clouds: Collection[str],
    protect: Collection[str],
    fingerprint: str,
    lookups: Iterable[Lookup] = (),
) -> BuildRequest:
    """Return the job that builds (or first looks up) images for every requirer cloud.

    `protect`: the image IDs no pruning may delete; `fingerprint`: the digest of the settings
    this build stands for (config.BuildConfig.fingerprint).
    """
    spec = BuildSpec(
        image=ImageSpec(
            bases=parse_bases(config.base_words()),
            arches=(platforms.parse_arch(config.arch),),
            prefix=config.prefix,
            runner_version=config.runner_version or None,
            runner_binary_repo=config.runner_binary_repo or platforms.UPSTREAM_RUNNER_REPO,
            script_url=config.script_url or None,
        ),
        site=SiteSpec(
            cloud=BUILD_CLOUD,
            flavor=config.flavor or None,
            network=config.network or None,
            timeout=BUILD_TIMEOUT,
        ),
        verify=VerifySpec(
            enabled=config.verify_images, script_url=config.verify_script_url or None
        ),
        # The build cloud first: it keeps every image it built, the source of `copy` for a
        # cloud that joins later (no rebuild); its revisions are pruned like every cloud's.
        upload=UploadSpec(clouds=(BUILD_CLOUD, *sorted(clouds))),
        # An ID that is not a safe word (from a peer, say) protects nothing: it names no image.
        prune=PruneSpec(
            keep_revisions=config.revision_history_limit,
            protect=frozenset(i for i in protect if text.is_image_id(i)),
        ),
    )
    return BuildRequest(
        spec=spec,
        script_secrets=dict(config.script_secrets),
        proxy=config.image_proxy,
        fingerprint=fingerprint,
        lookups=tuple(lookups),
    )


def due(clouds: Iterable[str], served_at: Mapping[str, str], now: datetime.datetime) -> list[str]:
    """Return the clouds whose last serving job started SERVE_INTERVAL ago or longer.

    `served_at`: cloud id → when a job last started to serve it (ISO 8601).
    """
    found = []
    for cloud in clouds:
        last = served_at.get(cloud)
        if last is None or now - datetime.datetime.fromisoformat(last) >= SERVE_INTERVAL:
            found.append(cloud)
        else:
            logger.info(
                "cloud %s was served at %s; not again before %s", cloud, last, SERVE_INTERVAL
            )
    return found


def lookups(config: BuildConfig, catalogue: Catalogue, clouds: Iterable[str]) -> list[Lookup]:
    """Return the images to look for: each configured base a cloud has no image of yet."""
    return [
        Lookup(
            cloud=cloud,
            base=base,
            arch=config.arch,
            name=names.image_name(
                config.prefix, platforms.parse_base(base), platforms.parse_arch(config.arch)
            ),
        )
        for cloud in clouds
        for base in catalogue.missing(cloud, config.bases, config.arch)
    ]


def served(
    served_at: Mapping[str, str], clouds: Sequence[str], now: datetime.datetime
) -> dict[str, str]:
    """Return `served_at` with these clouds served `now` (a job for them started)."""
    return {**served_at, **{cloud: now.isoformat() for cloud in clouds}}
