"""What a job is: the job file the charm writes and the runner reads, the result and the records.

One contract between the charm and its detached runner (src/job_runner.py), both of which
import this module: pydantic models and pure functions, no I/O. src/job_launcher.py writes the
job, src/job_records.py reads the result; the runner hands the CLI the job's build spec as a file
(`build_argv`) and renders the other command lines from the job (`lookup_argv`, `sweep_argv`:
the only place that knows the CLI's flags). The CLI's answer is the contract's `Report`.
"""

import datetime
import enum
from typing import Literal

import pydantic

from image_builder_contract import cli_args, names, rules, text
from image_builder_contract.report import Failure, ImageResult, Report, ResultText, Timing
from image_builder_contract.spec import BuildSpec

BUILD_CLOUD = "builder"  # requirer cloud ids always hold an underscore, so this cannot clash
SECRET_ENV_PREFIX = rules.SECRET_ENV_PREFIX
PROXY_ENV = rules.PROXY_ENV  # the build's proxy: it may carry credentials, so never in argv
BUILD_TIMEOUT = 2 * 60 * 60  # seconds the CLI may take; it cleans up after itself on timeout
KILL_GRACE = 15 * 60  # the runner kills a CLI that overran its own timeout by this much
LOOKUP_TIMEOUT = 120  # seconds per latest-build-id call
# Builder resources older than this belong to no live build (the runner kills any CLI at
# BUILD_TIMEOUT + KILL_GRACE), so the sweep before each build may delete them, even while a
# build of another unit with the same prefix runs.
LEFTOVER_AGE = 3 * 60 * 60
# Seconds one `clean` may take: it waits for each leftover server to be gone (300 s at most).
CLEAN_TIMEOUT = 600


class ResultKind(str, enum.Enum):
    """What a finished job did: built, or found every image already (lookup), or copied them."""

    BUILD = "build"
    LOOKUP = "lookup"  # every image existed already: no build ran
    COPY = "copy"  # the missing ones were copied from the build cloud (or failed to)

    def __str__(self) -> str:
        return self.value


class BuildResult(pydantic.BaseModel):
    """What one finished job produced: written by the runner, read by the charm."""

    run_id: str
    started_at: datetime.datetime
    finished_at: datetime.datetime
    exit_code: int
    images: list[ImageResult] = []
    failures: list[Failure] = []
    timings: list[Timing] = []
    error: ResultText = ""  # the build as a whole failed (crash, timeout, no JSON)
    kind: ResultKind = ResultKind.BUILD
    # Written by the charm, not the runner: the job ended without a result (killed, rebooted).
    lost: bool = False


class RunRecord(pydantic.BaseModel):
    """A started build, written by the charm when it launches the runner."""

    run_id: str
    started_at: datetime.datetime
    clouds: list[str] = []  # the clouds this build uploads to
    prefix: str = ""  # its resources' name prefix, for the clean-up should it die


class Lookup(pydantic.BaseModel):
    """An image that may already exist in a cloud (the runner asks `latest-build-id`)."""

    cloud: str
    base: str
    arch: str
    name: str


class BuildRequest(pydantic.BaseModel):
    """A job the charm decided to run: the build, its secrets and what to try before it.

    With lookups, the runner first asks the CLI for those existing images, then copies the
    missing ones from the build cloud (`copy_argv`), and builds only when the build cloud has
    none of them (a new requirer cloud that already has images, or that needs a copy).
    """

    model_config = pydantic.ConfigDict(frozen=True)

    spec: BuildSpec  # upload.clouds: the build cloud first, then every requirer cloud
    # Environment name (without SECRET_ENV_PREFIX) -> value; only ever in the 0600 job file.
    script_secrets: dict[str, pydantic.SecretStr] = {}
    # The model's proxy for the build (http://[user:password@]host:port); "" for none.
    proxy: pydantic.SecretStr = pydantic.SecretStr("")
    fingerprint: str = ""
    lookups: tuple[Lookup, ...] = ()

    @pydantic.field_serializer("script_secrets", when_used="json")
    def _reveal(self, secrets: dict[str, pydantic.SecretStr]) -> dict[str, str]:
        # The job file is the one place the runner can read them from (0600, like clouds.yaml).
        return {name: value.get_secret_value() for name, value in secrets.items()}

    @pydantic.field_serializer("proxy", when_used="json")
    def _reveal_proxy(self, proxy: pydantic.SecretStr) -> str:
        return proxy.get_secret_value()

    @property
    def clouds(self) -> tuple[str, ...]:
        """Return the requirer clouds this job serves."""
        return tuple(c for c in self.spec.upload.clouds if c != BUILD_CLOUD)

    def tagged(self, build_id: str) -> "BuildRequest":
        """Return this request with the build id the CLI tags the build's resources with."""
        site = self.spec.site.model_copy(update={"build_id": build_id})
        return self.model_copy(update={"spec": self.spec.model_copy(update={"site": site})})


class BuildJob(pydantic.BaseModel):
    """The job file: one request plus where the runner finds and puts everything."""

    run_id: str
    started_at: datetime.datetime
    unit: str
    cli: str  # the CLI's console script
    juju_exec: str
    result: str  # where the runner writes the BuildResult
    lock: str  # the build lock; the runner holds it while it runs
    # Set when the runner inherits the hook's locked descriptor (a new session, not systemd).
    lock_fd: int | None = None
    # The runner forks away from the hook (new session); under systemd it is the service itself.
    fork: bool = True
    env: dict[str, str] = {}  # the CLI's environment, without secrets
    kill_after: float = BUILD_TIMEOUT + KILL_GRACE
    lookup_timeout: float = LOOKUP_TIMEOUT
    leftover_age: int = LEFTOVER_AGE
    request: BuildRequest


class CleanJob(pydantic.BaseModel):
    """A job file that deletes what one dead build left in the build cloud (no lock, no result).

    A dead build's SHUTOFF builder keeps its user-data, script secrets included, in Nova: this
    removes it at once instead of at the next sweep, hours later.
    """

    kind: Literal["clean"] = "clean"
    build_id: str
    prefix: str = ""
    cli: str
    env: dict[str, str] = {}  # the CLI's environment (no secrets: `clean` needs none)
    fork: bool = True  # as BuildJob.fork
    timeout: float = CLEAN_TIMEOUT


def found_image(lookup: Lookup, answer: str) -> ImageResult | None:
    """Return the image `latest-build-id` answered for a lookup; None: none, or an unsafe ID."""
    image_id = answer.strip()
    if not text.is_image_id(image_id):
        return None
    return ImageResult(id=image_id, **lookup.model_dump())


def build_argv(job: BuildJob, spec_file: str) -> list[str]:
    """Return the CLI's `build` command line: the spec is in `spec_file` (job.request.spec)."""
    return [job.cli, *cli_args.command_line(BUILD_CLOUD, "build", {"--spec": spec_file})]


def copy_argv(job: BuildJob, cloud: str, bases: list[str]) -> list[str]:
    """Return the `copy` command line that gives one cloud the build cloud's current images."""
    image = job.request.spec.image
    options = {
        "--base": ",".join(bases),
        "--arch": ",".join(arch.github for arch in image.arches),
        "--prefix": image.prefix,
        "--upload-clouds": cloud,
    }
    return [job.cli, *cli_args.command_line(BUILD_CLOUD, "copy", options)]


def copy_plan(missing: list[Lookup]) -> dict[str, list[str]]:
    """Return {cloud: bases} of the lookups that found nothing: what `copy` is asked for."""
    plan: dict[str, list[str]] = {}
    for lookup in missing:
        plan.setdefault(lookup.cloud, []).append(lookup.base)
    return plan


def needs_build(answer: Report) -> bool:
    """Return whether a `copy` found no source in the build cloud: only a build can help."""
    return any(failure.step == names.COPY_NO_SOURCE for failure in answer.failures)


def lookup_argv(job: BuildJob, lookup: Lookup) -> list[str]:
    """Return the command line that asks one cloud for the newest image of a name."""
    return [job.cli, *cli_args.command_line(lookup.cloud, "latest-build-id", {}), lookup.name]


def sweep_argv(job: BuildJob) -> list[list[str]]:
    """Return the `clean` command lines for the build cloud and every upload cloud.

    Only the build cloud runs builders: an upload cloud is a requirer's project, where `clean
    --upload-cloud` deletes nothing but unfinished images our CLI uploaded (by their
    properties), never a server or a security group of the requirer's.
    """
    options = {"--prefix": job.request.spec.image.prefix, "--older-than": str(job.leftover_age)}
    uploads = job.request.clouds
    return [
        [job.cli, *cli_args.command_line(BUILD_CLOUD, "clean", options)],
        *(
            [job.cli, *cli_args.command_line(cloud, "clean", options), "--upload-cloud"]
            for cloud in uploads
        ),
    ]


def clean_argv(job: CleanJob) -> list[str]:
    """Return the `clean` command line that deletes one build's resources in the build cloud."""
    options = {"--prefix": job.prefix, "--build-id": job.build_id}
    return [job.cli, *cli_args.command_line(BUILD_CLOUD, "clean", options)]


def cli_environment(job: BuildJob) -> dict[str, str]:
    """Return the CLI's environment: the job's plus the script secrets under their prefix."""
    secrets = {
        f"{SECRET_ENV_PREFIX}{name}": value.get_secret_value()
        for name, value in job.request.script_secrets.items()
    }
    proxy = job.request.proxy.get_secret_value()
    return {**job.env, **secrets, **({PROXY_ENV: proxy} if proxy else {})}
