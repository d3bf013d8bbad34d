"""The names of everything a build creates in a cloud, all derived from one prefix.

The charm uses the application name as the prefix; the CLI's `--prefix` takes it.
"""

import enum
import re

from image_builder_contract.platforms import Arch, Base

DEFAULT_PREFIX = "github-runner-image-builder"


class Step(str, enum.Enum):
    """The steps of one build, in order: the words of a report's failures, timings and metrics."""

    BASE_IMAGE = "base-image"
    SECURITY_GROUP = "security-group"
    SERVER = "server"
    VERIFY_GROUP = "verify-group"
    WAIT = "wait"
    SNAPSHOT = "snapshot"
    VERIFY = "verify"
    COPY = "copy"
    PRUNE = "prune"

    def __str__(self) -> str:
        return self.value


class Phase(str, enum.Enum):
    """Which part of a step failed: its run, or its clean-up after the build."""

    RUN = "run"
    CLEANUP = "cleanup"

    def __str__(self) -> str:
        return self.value


# The failure step of `copy` when the build cloud has no image to copy: a build is needed.
COPY_NO_SOURCE = "find"
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,59}")


def check_prefix(prefix: str) -> None:
    """Raise ValueError unless `prefix` can start every resource name (1-60 safe characters)."""
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(
            f"prefix {prefix!r} must be 1-60 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def image_name(prefix: str, base: Base, arch: Arch) -> str:
    """Return the name every revision of this (base, arch) image carries."""
    return f"{prefix}-{base.codename}-{arch.github}"


def base_image_name(prefix: str, base: Base, arch: Arch) -> str:
    """Return the name of the Ubuntu cloud image the builds of (base, arch) boot from.

    A pinned serial is part of it, so a pin never replaces the current base image (nor the
    other way round); the VM's architecture names it (armhf images build on arm64).
    """
    serial = f"-{base.serial}" if base.serial else ""
    return f"{prefix}-base-{base.codename}{serial}-{arch.vm_ubuntu}"


# The kinds of temporary servers and security groups a build names `<prefix>-<kind>-…`: the
# builder and the verification's test server. `clean` finds a crashed build's by these.
TEMPORARY_KINDS: tuple[str, ...] = ("builder", "verify")


def temporary_prefixes(prefix: str) -> tuple[str, ...]:
    """Return how the names of a build's temporary servers and security groups begin."""
    return tuple(f"{prefix}-{kind}-" for kind in TEMPORARY_KINDS)


def resource_name(prefix: str, kind: str, base: Base, arch: Arch, nonce: str) -> str:
    """Return the name of one build's server or security group (`kind`: TEMPORARY_KINDS)."""
    if kind not in TEMPORARY_KINDS:
        raise ValueError(f"{kind!r} is not a temporary resource kind {TEMPORARY_KINDS}")
    return f"{prefix}-{kind}-{base.codename}-{arch.github}-{nonce}"
