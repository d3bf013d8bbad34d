"""Ubuntu bases and CPU architectures, and the words each party uses for them.

Ubuntu's cloud images say amd64/arm64, Glance's `architecture` property says x86_64/aarch64,
GitHub's runner releases and labels say x64/arm64, and `uname -m` says x86_64/armv7l. This
module is the one place that maps them, and says which of them a runner image can be built
for. Standard library only: the charm imports it too.

armhf is the one architecture whose runner differs from its VM: a 32-bit runner (GitHub's
`arm`) on an arm64 Ubuntu VM, its libraries through dpkg multiarch.
"""

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class Arch:
    """One CPU architecture under each party's name."""

    ubuntu: str  # the dpkg architecture of the runner and its libraries
    glance: str  # Glance's word for the VM's architecture (the image boots there)
    github: str  # the runner tarball's and the runner label's word
    vm: str = ""  # the dpkg architecture of the VM and its cloud image, when not `ubuntu`
    also: tuple[str, ...] = ()  # other words operators use (uname -m, ...)
    oldest_base: str = ""  # the oldest Ubuntu version this architecture's images support
    upstream_runner: bool = True  # whether actions/runner publishes a runner for it

    @property
    def vm_ubuntu(self) -> str:
        """Return the dpkg architecture of the VM that builds and runs this architecture."""
        return self.vm or self.ubuntu

    @property
    def words(self) -> tuple[str, ...]:
        """Return every word that names this architecture (Glance's only when it is its own)."""
        own_glance = () if self.vm else (self.glance,)
        return (self.ubuntu, self.github, *own_glance, *self.also)


@dataclasses.dataclass(frozen=True)
class Base:
    """One Ubuntu release."""

    codename: str
    version: str
    serial: str = ""  # a pinned Ubuntu cloud image serial (20260715); "" for the current one


ARCHES: tuple[Arch, ...] = (
    Arch(ubuntu="amd64", glance="x86_64", github="x64"),
    Arch(ubuntu="arm64", glance="aarch64", github="arm64"),
    Arch(ubuntu="s390x", glance="s390x", github="s390x", upstream_runner=False),
    Arch(ubuntu="ppc64el", glance="ppc64le", github="ppc64le", upstream_runner=False),
    Arch(
        ubuntu="armhf",
        glance="aarch64",
        github="arm",
        vm="arm64",
        also=("armv7l",),
        oldest_base="24.04",
    ),
)
# The GitHub repository whose releases carry the runner tarballs, unless the operator names
# another (a fork that builds s390x and ppc64le runners, say).
UPSTREAM_RUNNER_REPO = "actions/runner"
_REPO = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9_.-]{1,100}")
_SERIAL = re.compile(r"[0-9]{8}(?:\.[0-9]{1,3})?")

BASES: tuple[Base, ...] = (
    Base(codename="focal", version="20.04"),
    Base(codename="jammy", version="22.04"),
    Base(codename="noble", version="24.04"),
    Base(codename="resolute", version="26.04"),
)


def parse_arch(word: str) -> Arch:
    """Return the architecture any party's word names (x64, amd64, x86_64, arm64, armv7l …)."""
    wanted = word.strip().lower()
    for arch in ARCHES:
        if wanted in arch.words:
            return arch
    known = ", ".join("/".join(dict.fromkeys(a.words)) for a in ARCHES)
    raise ValueError(f"unknown architecture {word!r}; expected one of {known}")


def parse_base(word: str) -> Base:
    """Return the Ubuntu release a codename or version names (noble, 24.04, noble@20260715 …).

    After `@` comes the serial of the Ubuntu cloud image to pin, instead of the current one.
    """
    name, pinned, serial = word.strip().lower().partition("@")
    if pinned and not _SERIAL.fullmatch(serial):
        raise ValueError(
            f"invalid cloud image serial {serial!r} in {word!r}: expected the date the image "
            "was published, such as noble@20260715 (the directory names under "
            "cloud-images.ubuntu.com/<codename>/)"
        )
    for base in BASES:
        if name in (base.codename, base.version):
            return dataclasses.replace(base, serial=serial)
    known = ", ".join(f"{b.codename}/{b.version}" for b in BASES)
    raise ValueError(f"unknown Ubuntu base {word!r}; expected one of {known}")


# The releases the builder's user-data supports.
RUNNER_BASES: tuple[str, ...] = ("focal", "jammy", "noble", "resolute")


def check_runner_base(base: Base) -> None:
    """Raise ValueError when the builder's user-data does not support this release."""
    if base.codename not in RUNNER_BASES:
        raise ValueError(
            f"unsupported base {base.codename!r}; the user-data supports {', '.join(RUNNER_BASES)}"
        )


def check_pair(base: Base, arch: Arch) -> None:
    """Raise ValueError when images of `arch` cannot be built on `base`."""
    if arch.oldest_base and base.version < arch.oldest_base:
        oldest = next(b.codename for b in BASES if b.version == arch.oldest_base)
        raise ValueError(
            f"{arch.ubuntu} images need Ubuntu {oldest} ({arch.oldest_base}) or later: the "
            f"32-bit runner's libraries come through dpkg multiarch, which {base.codename} "
            "cannot provide for it; build them on a newer base"
        )


def check_runner_repo(repo: str, arch: Arch) -> str:
    """Return a runner repository (owner/name) for `arch`; raise ValueError naming the fix."""
    if not _REPO.fullmatch(repo) or ".." in repo:
        raise ValueError(
            f"invalid runner binary repository {repo!r}: expected a GitHub repository as "
            "owner/name, such as actions/runner or canonical/github-actions-runner"
        )
    if repo.lower() == UPSTREAM_RUNNER_REPO and not arch.upstream_runner:
        raise ValueError(
            f"{UPSTREAM_RUNNER_REPO} publishes no {arch.github} runner; name a repository "
            "whose releases carry actions-runner-linux-"
            f"{arch.github}-<version>.tar.gz, such as canonical/github-actions-runner"
        )
    return repo
