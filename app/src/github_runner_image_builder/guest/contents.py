"""The image contract: what every runner image contains, in one place.

The builder's user-data installs from these lists and the verification guest checks against
them, so adding an entry here (a package, a snap, a tool) changes both without touching either
template's logic or the checks' code. Runner charms rely on these (github-runner-manager's
openstack-userdata.sh.j2 and pre-job.j2): docker, jq, snap, socat, the ubuntu user in lxd and
docker, a writable ~ubuntu/actions-runner for its `.env`.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Snap:
    """A snap the image holds; `enabled=False`: installed but its services disabled."""

    name: str
    channel: str = "stable"
    classic: bool = False
    enabled: bool = True


@dataclasses.dataclass(frozen=True)
class Tool:
    """A command every job finds on ubuntu's PATH.

    `version` is the command line that prints its version for the software report (the first
    output line holding a digit is kept); empty: only its presence is checked.
    """

    name: str
    version: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class OwnedPath:
    """A path that must exist, be owned by `owner` and, if `writable`, be writable by it."""

    path: str
    owner: str
    writable: bool = True


# The toolchain runner operators expect, from the Ubuntu archive (gh comes from GitHub's own
# repository on releases whose archive lacks a current one). snapd is listed so that snaps can
# always be installed. What runner charms rely on (docs/image-contents.md says which behaviour
# each serves): nftables, since the runner's boot script loads aproxy's redirect rules with
# `nft` and enables nftables.service; cargo, rustc and pkg-config, since jobs build Python
# wheels such as cryptography from source.
PACKAGES: tuple[str, ...] = (
    "build-essential",
    "cargo",
    "docker.io",
    "gh",
    "jq",
    "nftables",
    "npm",
    "pkg-config",
    "python-is-python3",
    "python3-dev",
    "python3-pip",
    "rustc",
    "shellcheck",
    "snapd",
    "socat",
    "tar",
    "time",
    "unzip",
    "wget",
)

# Packages only one architecture's images hold, by its dpkg word (platforms.Arch.ubuntu):
# the runners built for s390x and ppc64le need a .NET runtime from the archive; the 32-bit
# runner on an arm64 VM needs the armhf loader and libatomic (`:armhf` through multiarch).
ARCH_PACKAGES: dict[str, tuple[str, ...]] = {
    "s390x": ("dotnet-runtime-8.0",),
    "ppc64el": ("dotnet-runtime-8.0",),
    "armhf": ("libc6:armhf", "libstdc++6:armhf", "libatomic1:armhf", "zlib1g:armhf"),
}
# The armhf runner's .NET loads libicu, whose package name changes with each release.
ARMHF_LIBICU: dict[str, str] = {"noble": "libicu74:armhf", "resolute": "libicu78:armhf"}


def packages(base: str, arch: str) -> tuple[str, ...]:
    """Return the apt packages an image of (base codename, dpkg arch) holds."""
    extra = ARCH_PACKAGES.get(arch, ())
    if arch == "armhf" and base in ARMHF_LIBICU:
        extra = (*extra, ARMHF_LIBICU[base])
    return PACKAGES + extra


# Installed with `npm install --global`: apt's `yarn` is another program (cmdtest).
NPM_PACKAGES: tuple[str, ...] = ("yarn",)

# mikefarah's yq, the one GitHub-hosted runners ship, comes as a snap. The runner's boot script
# runs `snap install aproxy --edge` (present: no store round trip on every boot), and pre-job
# runs `snap enable` and `snap start opentelemetry-collector` when an OTel endpoint is set, so
# it is installed disabled.
SNAPS: tuple[Snap, ...] = (
    Snap("yq"),
    Snap("aproxy", channel="edge"),
    Snap("opentelemetry-collector", enabled=False),
)

TOOLS: tuple[Tool, ...] = (
    Tool("docker", ("docker", "--version")),
    Tool("git", ("git", "--version")),
    Tool("gh", ("gh", "--version")),
    Tool("python3", ("python3", "--version")),
    Tool("pip3", ("pip3", "--version")),
    Tool("node", ("node", "--version")),
    Tool("npm", ("npm", "--version")),
    Tool("jq", ("jq", "--version")),
    Tool("yq", ("yq", "--version")),
    Tool("make", ("make", "--version")),
    Tool("gcc", ("gcc", "--version")),
    Tool("pkg-config", ("pkg-config", "--version")),
    Tool("cargo", ("cargo", "--version")),
    Tool("rustc", ("rustc", "--version")),
    Tool("yarn", ("yarn", "--version")),
    Tool("nft", ("nft", "--version")),
    Tool("shellcheck", ("shellcheck", "--version")),
    Tool("curl", ("curl", "--version")),
    Tool("wget", ("wget", "--version")),
    Tool("tar", ("tar", "--version")),
    Tool("unzip", ("unzip", "-v")),
    Tool("socat", ("socat", "-V")),
    Tool("snap", ("snap", "--version")),
    Tool("sudo"),
)

# Jobs run as this user; GARM runs them as RUNNER_ALIAS, the same account under a second name
# whose home /home/runner links to the user's.
USER = "ubuntu"
USER_GROUPS: tuple[str, ...] = ("docker", "lxd", "sudo")
RUNNER_ALIAS = "runner"
RUNNER_DIR = "/home/ubuntu/actions-runner"
PATHS: tuple[OwnedPath, ...] = (
    OwnedPath(RUNNER_DIR, USER),  # the runner's boot script writes `.env` there
    OwnedPath("/usr/local/bin", USER),  # jobs install tools without sudo
)
# systemd units that must be enabled and running on a fresh boot.
SERVICES: tuple[str, ...] = ("docker",)

# Whether the build's proxy stays in the image (apt, snap, /etc/environment, docker): the
# verification checks the image holds exactly that proxy, or none when this is False. Images
# boot in other clouds than the build's, and runner charms set up their own proxy at boot
# (aproxy), so the build's cleanup removes it.
PROXY_KEPT_IN_IMAGE = False


def expected_proxy(build_proxy: str) -> str:
    """Return the proxy URL the image must carry ("" for none) for a build that used this one."""
    return build_proxy if PROXY_KEPT_IN_IMAGE else ""
