"""What a build job is: the request the charm decides on, and the records of its run.

Pure data and decisions; src/builder.py does the I/O (launching, reading and writing these).
"""

import dataclasses
import datetime
from collections.abc import Mapping, Sequence

import pydantic

BUILD_CLOUD = "builder"  # requirer cloud ids always hold an underscore, so this cannot clash
SECRET_ENV_PREFIX = "IMAGE_BUILDER_SECRET_"  # noqa: S105 - a name prefix, not a secret
# The CLI reads the build's proxy from here: it may carry credentials, so never in argv.
PROXY_ENV = "IMAGE_BUILDER_PROXY"
BUILD_TIMEOUT = 2 * 60 * 60  # seconds the CLI may take; it cleans up after itself on timeout
KILL_GRACE = 15 * 60  # the runner kills a CLI that overran its own timeout by this much
# Builder resources older than this belong to no live build (the runner kills any CLI at
# BUILD_TIMEOUT + KILL_GRACE), so the sweep before each build may delete them, even while a
# build of another unit with the same prefix runs.
LEFTOVER_AGE = 3 * 60 * 60
PROXY_VARIABLES = {
    "JUJU_CHARM_HTTP_PROXY": ("http_proxy", "HTTP_PROXY"),
    "JUJU_CHARM_HTTPS_PROXY": ("https_proxy", "HTTPS_PROXY"),
    "JUJU_CHARM_NO_PROXY": ("no_proxy", "NO_PROXY"),
}


class BuiltImage(pydantic.BaseModel):
    """One image the CLI built and uploaded to one cloud."""

    name: str
    base: str
    arch: str
    cloud: str
    id: str


class BuildFailure(pydantic.BaseModel):
    """One (base, arch, cloud) the CLI could not build or upload."""

    base: str
    arch: str
    cloud: str = ""
    step: str = ""
    error: str = ""


class BuildResult(pydantic.BaseModel):
    """What one finished build produced, as the runner recorded it."""

    run_id: str
    started_at: datetime.datetime
    finished_at: datetime.datetime
    exit_code: int
    images: list[BuiltImage] = []
    failures: list[BuildFailure] = []
    error: str = ""  # the build as a whole failed (crash, timeout, no JSON)
    kind: str = "build"  # "lookup": every image existed already, no build ran


class RunRecord(pydantic.BaseModel):
    """A started build, written by the charm when it launches the runner."""

    run_id: str
    started_at: datetime.datetime
    clouds: list[str] = []  # the clouds this build uploads to


class Lookup(pydantic.BaseModel):
    """An image that may already exist in a cloud (the runner asks `latest-build-id`)."""

    cloud: str
    base: str
    arch: str
    name: str


@dataclasses.dataclass(frozen=True)
class BuildRequest:
    """A build the charm decided to run: the CLI's arguments and its secret environment.

    With lookups, the runner first asks the CLI for those existing images and skips the build
    when every one exists (a new requirer cloud that already has images).
    """

    args: tuple[str, ...]
    secret_env: Mapping[str, str] = dataclasses.field(repr=False)
    fingerprint: str
    clouds: tuple[str, ...] = ()
    lookups: tuple[Lookup, ...] = ()
    # CLI command lines the runner runs before the build: sweeps of what crashed builds left.
    sweeps: tuple[tuple[str, ...], ...] = ()


@dataclasses.dataclass(frozen=True)
class StartOutcome:
    """What a trigger did: started a build, or queued one after the running build."""

    started: bool
    run_id: str


@dataclasses.dataclass(frozen=True)
class BuildState:
    """A snapshot of the unit's builds."""

    running: bool
    queued: bool
    current: RunRecord | None
    last_result: BuildResult | None


@dataclasses.dataclass(frozen=True)
class BuildCommandInput:
    """Everything that decides a build's command line (see build_request)."""

    bases: Sequence[str]
    arch: str
    prefix: str
    upload_clouds: Sequence[str]
    keep_revisions: int
    flavor: str
    network: str
    runner_version: str
    script_url: str
    proxy: str = dataclasses.field(repr=False)  # may carry credentials
    protect: Sequence[str]
    script_secrets: Mapping[str, str] = dataclasses.field(repr=False)
    fingerprint: str
    lookups: Sequence[Lookup] = ()
    runner_binary_repo: str = ""
    verify_script_url: str = ""
    verify: bool = True  # False: the CLI copies images without booting them first


def build_request(spec: BuildCommandInput) -> BuildRequest:
    """Return the CLI arguments for one build; secrets stay out of them, in the environment."""
    args = [
        "--os-cloud",
        BUILD_CLOUD,
        "build",
        "--base",
        ",".join(spec.bases),
        "--arch",
        spec.arch,
        "--prefix",
        spec.prefix,
        "--upload-clouds",
        ",".join(spec.upload_clouds),
        "--keep-revisions",
        str(spec.keep_revisions),
        "--timeout",
        str(BUILD_TIMEOUT),
    ]
    optional = {
        "--flavor": spec.flavor,
        "--network": spec.network,
        "--runner-version": spec.runner_version,
        "--script-url": spec.script_url,
        "--runner-binary-repo": spec.runner_binary_repo,
        "--protect": ",".join(sorted(set(spec.protect))),
        "--verify-script-url": spec.verify_script_url,
    }
    for flag, value in optional.items():
        if value:
            args += [flag, value]
    if not spec.verify:
        args.append("--no-verify")
    secret_env = {f"{SECRET_ENV_PREFIX}{k}": v for k, v in spec.script_secrets.items()}
    if spec.proxy:
        secret_env[PROXY_ENV] = spec.proxy
    sweeps = tuple(
        ("--os-cloud", cloud, "clean", "--prefix", spec.prefix, "--older-than", str(LEFTOVER_AGE))
        for cloud in dict.fromkeys((BUILD_CLOUD, *spec.upload_clouds))
    )
    return BuildRequest(
        args=tuple(args),
        sweeps=sweeps,
        secret_env=secret_env,
        fingerprint=spec.fingerprint,
        clouds=tuple(spec.upload_clouds),
        lookups=tuple(spec.lookups),
    )


def proxy_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Return the Juju model's proxy settings as the usual proxy variables."""
    env: dict[str, str] = {}
    for juju_name, names in PROXY_VARIABLES.items():
        if value := environ.get(juju_name, ""):
            env.update(dict.fromkeys(names, value))
    return env
