"""Ubuntu bases and CPU architectures, and the words each party uses for them.

Ubuntu's cloud images say amd64/arm64, Glance's `architecture` property says x86_64/aarch64,
GitHub's runner releases and labels say x64/arm64. This module is the one place that maps them,
and says which of them a runner image can be built for.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Arch:
    """One CPU architecture under each party's name."""

    ubuntu: str
    glance: str
    github: str


@dataclasses.dataclass(frozen=True)
class Base:
    """One Ubuntu release."""

    codename: str
    version: str


ARCHES: tuple[Arch, ...] = (
    Arch(ubuntu="amd64", glance="x86_64", github="x64"),
    Arch(ubuntu="arm64", glance="aarch64", github="arm64"),
    Arch(ubuntu="s390x", glance="s390x", github="s390x"),
    Arch(ubuntu="ppc64el", glance="ppc64le", github="ppc64le"),
)

BASES: tuple[Base, ...] = (
    Base(codename="focal", version="20.04"),
    Base(codename="jammy", version="22.04"),
    Base(codename="noble", version="24.04"),
    Base(codename="resolute", version="26.04"),
)


def parse_arch(word: str) -> Arch:
    """Return the architecture any party's word names (x64, amd64, x86_64, arm64, aarch64 …)."""
    wanted = word.strip().lower()
    for arch in ARCHES:
        if wanted in (arch.ubuntu, arch.glance, arch.github):
            return arch
    known = ", ".join(f"{a.github}/{a.ubuntu}" for a in ARCHES)
    raise ValueError(f"unknown architecture {word!r}; expected one of {known}")


def parse_base(word: str) -> Base:
    """Return the Ubuntu release a codename or version names (noble, 24.04 …)."""
    wanted = word.strip().lower()
    for base in BASES:
        if wanted in (base.codename, base.version):
            return base
    known = ", ".join(f"{b.codename}/{b.version}" for b in BASES)
    raise ValueError(f"unknown Ubuntu base {word!r}; expected one of {known}")


# GitHub publishes Actions runner builds for these architectures only (GitHub's words).
RUNNER_ARCHES: tuple[str, ...] = ("x64", "arm64")
# The releases the builder's user-data supports.
RUNNER_BASES: tuple[str, ...] = ("focal", "jammy", "noble", "resolute")


def check_runner_arch(arch: Arch) -> None:
    """Raise ValueError when no runner image can be built for this architecture."""
    if arch.github not in RUNNER_ARCHES:
        raise ValueError(
            f"unsupported architecture {arch.github!r}: GitHub publishes Actions runner "
            f"builds for {' and '.join(RUNNER_ARCHES)} only"
        )


def check_runner_base(base: Base) -> None:
    """Raise ValueError when the builder's user-data does not support this release."""
    if base.codename not in RUNNER_BASES:
        raise ValueError(
            f"unsupported base {base.codename!r}; the user-data supports {', '.join(RUNNER_BASES)}"
        )
