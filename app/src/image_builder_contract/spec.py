"""The build spec: everything one `build` is asked to do, grouped by what it is about.

The charm writes it into the job file; the job runner hands it to the CLI as a file
(`build --spec=FILE`); a person's flags fill the same spec. The CLI hands each step only its part.
Secrets are never part of it: script secrets and a proxy with credentials reach the CLI in its
environment (`rules.SECRET_ENV_PREFIX`, `rules.PROXY_ENV`).
"""

import urllib.parse
from typing import Annotated, Any

import pydantic

from image_builder_contract import names, platforms, rules
from image_builder_contract.report import ImageId

DEFAULT_CLOUD_IMAGES_URL = "https://cloud-images.ubuntu.com"


def base_word(base: platforms.Base) -> str:
    """Return the word that names a base in a spec: its codename, @serial when pinned."""
    return f"{base.codename}@{base.serial}" if base.serial else base.codename


def parse_bases(words: list[str] | tuple[str, ...]) -> tuple[platforms.Base, ...]:
    """Return the bases named, once each; raise ValueError for a codename given twice."""
    bases = tuple(dict.fromkeys(platforms.parse_base(w) for w in words))
    codenames = [b.codename for b in bases]
    for codename in dict.fromkeys(c for c in codenames if codenames.count(c) > 1):
        # Both would publish the same image name.
        raise ValueError(f"{codename} is given twice (with different serials); give it once")
    return bases


def check_cloud_images_url(url: str) -> str:
    """Return `url` without a trailing slash; raise ValueError unless it is http(s) or file."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https", "file") or not (parsed.netloc or parsed.path):
        raise ValueError(f"--cloud-images-url {url!r} must be an http(s):// or file:// URL")
    return url.rstrip("/")


def _checked(check: Any) -> Any:
    def run(value: str) -> str:
        check(value)
        return value

    return run


def _bases(value: Any) -> tuple[platforms.Base, ...]:
    if isinstance(value, (list, tuple)) and all(isinstance(v, platforms.Base) for v in value):
        return tuple(value)
    return parse_bases([str(v) for v in value])


def _arches(value: Any) -> tuple[platforms.Arch, ...]:
    return tuple(
        dict.fromkeys(
            v if isinstance(v, platforms.Arch) else platforms.parse_arch(v) for v in value
        )
    )


Bases = Annotated[
    tuple[platforms.Base, ...],
    pydantic.PlainValidator(_bases),
    pydantic.PlainSerializer(lambda bases: [base_word(b) for b in bases]),
]
Arches = Annotated[
    tuple[platforms.Arch, ...],
    pydantic.PlainValidator(_arches),
    pydantic.PlainSerializer(lambda arches: [a.github for a in arches]),
]
Prefix = Annotated[str, pydantic.AfterValidator(_checked(names.check_prefix))]
ScriptUrl = Annotated[str, pydantic.AfterValidator(_checked(rules.check_script_url))]
BuildId = Annotated[str, pydantic.AfterValidator(_checked(rules.check_build_id))]
Seconds = Annotated[float, pydantic.Field(gt=0)]


def _runner_repo(repo: str) -> str:
    # Any architecture that upstream publishes: the (repo, arch) pair is checked per build.
    return platforms.check_runner_repo(repo, platforms.parse_arch("x64"))


class _Part(pydantic.BaseModel):
    # A misspelt key in a spec file is an error, not a default silently taken.
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


class ImageSpec(_Part):
    """What image: its bases and architectures, its name prefix and what goes into it."""

    bases: Bases = (platforms.parse_base("noble"),)
    arches: Arches = (platforms.parse_arch("x64"),)
    prefix: Prefix = names.DEFAULT_PREFIX
    runner_version: (
        Annotated[str, pydantic.AfterValidator(rules.normalize_runner_version)] | None
    ) = None  # None: the latest release
    runner_binary_repo: Annotated[str, pydantic.AfterValidator(_runner_repo)] = (
        platforms.UPSTREAM_RUNNER_REPO
    )
    script_url: ScriptUrl | None = None  # the operator's script, run last as root
    cloud_images_url: Annotated[str, pydantic.AfterValidator(check_cloud_images_url)] = (
        DEFAULT_CLOUD_IMAGES_URL
    )


class SiteSpec(_Part):
    """Where to build: the build cloud, the builder's flavor and network, time limits."""

    cloud: str  # its clouds.yaml name
    flavor: str | None = None  # None: the smallest that fits
    network: str | None = None  # None: the first with a subnet
    timeout: Seconds = 3600.0  # the guest and the snapshot
    # Pause before booting again after "No valid host": seconds, picked at random in range.
    boot_retry_delay: tuple[float, float] = (30.0, 60.0)
    # Tags every server, security group and image of this build, so `clean --build-id` finds
    # a dead build's resources at once, whatever their age.
    build_id: BuildId | None = None

    @pydantic.field_validator("boot_retry_delay")
    @classmethod
    def _ordered(cls, delay: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= delay[0] <= delay[1]:
            raise ValueError("expected a range of seconds MIN-MAX with 0 <= MIN <= MAX")
        return delay


class VerifySpec(_Part):
    """How to verify: boot a test server from the image before anyone gets it."""

    enabled: bool = True
    script_url: ScriptUrl | None = None  # the operator's smoke test, the `script` check
    timeout: Seconds = 1200.0


class UploadSpec(_Part):
    """Where the image goes: the clouds (clouds.yaml names) that get it."""

    clouds: tuple[str, ...] = ()  # none: the build cloud only

    @pydantic.field_validator("clouds")
    @classmethod
    def _once_each(cls, clouds: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(clouds))


class PruneSpec(_Part):
    """What to prune: keep this many revisions per cloud, never a protected image."""

    keep_revisions: Annotated[int, pydantic.Field(ge=1)] = 5
    protect: frozenset[ImageId] = frozenset()  # those still published to runner pools


class BuildSpec(_Part):
    """One `build`: what image, where to build it, how to verify, where it goes, what to prune."""

    image: ImageSpec = ImageSpec()
    site: SiteSpec
    verify: VerifySpec = VerifySpec()
    upload: UploadSpec = UploadSpec()
    prune: PruneSpec = PruneSpec()

    def targets(self) -> tuple[str, ...]:
        """Return the clouds that get the image: the upload clouds, or the build cloud."""
        return self.upload.clouds or (self.site.cloud,)

    @classmethod
    def from_json(cls, document: str | bytes) -> "BuildSpec":
        """Return the spec in a spec file; raise pydantic.ValidationError naming each problem."""
        return cls.model_validate_json(document)
