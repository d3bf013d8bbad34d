"""Host set-up and the cached guest image of the real-guest tier.

No Ubuntu cloud image can be downloaded on the machines this tier runs on, so the guest is a
Debian bookworm root built with debootstrap from the Debian mirror, with the real cloud-init
from Debian's archive, configured the way an Ubuntu cloud image is (a default `ubuntu` user, an
OpenStack config drive as the datasource). It boots directly (kernel and initrd given to QEMU),
so the disk needs no partition table or boot loader and is built without loop devices or
mounts: `mkfs.ext4 -d` copies the root directory into a file system image.

The image is built once and cached under ~/.cache/github-runner-image-builder/realguest-<hash>;
the hash covers the recipe below (bump RECIPE_VERSION when a build step changes), so a changed
recipe builds a new image.
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# What the host needs: QEMU and its firmware (ipxe-qemu holds the virtio-net boot ROM QEMU
# loads for the NIC), debootstrap (and the Debian archive key, which Ubuntu hosts lack),
# mkfs.ext4 (-d) and genisoimage for the config drive.
HOST_PACKAGES: tuple[str, ...] = (
    "qemu-system-x86",
    "qemu-utils",
    "seabios",
    "ipxe-qemu",
    "debootstrap",
    "debian-archive-keyring",
    "e2fsprogs",
    "genisoimage",
)
# A file from each package above: when all exist, nothing is installed.
HOST_PROGRAMS: tuple[str, ...] = (
    "/usr/bin/qemu-system-x86_64",
    "/usr/bin/qemu-img",
    "/usr/share/seabios/bios-256k.bin",
    "/usr/lib/ipxe/qemu/efi-virtio.rom",
    "/usr/sbin/debootstrap",
    "/usr/share/keyrings/debian-archive-keyring.gpg",
    "/usr/sbin/mkfs.ext4",
    "/usr/bin/genisoimage",
)

SUITE = "bookworm"
MIRROR = os.environ.get("REALGUEST_MIRROR", "http://deb.debian.org/debian")
# python3-cffi-backend: without it cloud-init's dependencies fail to configure on minbase.
GUEST_PACKAGES: tuple[str, ...] = (
    "python3-cffi-backend",
    "systemd-sysv",
    "udev",
    "dbus",
    "linux-image-amd64",
    "initramfs-tools",
    "cloud-init",
    "openssh-server",
    "sudo",
    "ifupdown",
    "isc-dhcp-client",
    "iproute2",
    "netbase",
    "kmod",
    "procps",
)
# cloud-init 22.4 on a minbase root: `locale: false` or update-locale fails and cloud-init
# never reaches the user scripts; one SSH host key type (all of them took 10 s under TCG).
# The datasource is the config drive only, as on Nova with config_drive=True.
CLOUD_CFG = """\
datasource_list: [ConfigDrive, None]
locale: false
manage_etc_hosts: localhost
ssh_genkeytypes: [ed25519]
system_info:
  default_user:
    name: ubuntu
    lock_passwd: true
    gecos: Ubuntu
    groups: [adm, sudo]
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    shell: /bin/bash
"""
# The initramfs needs only what mounts the root (6 MB instead of 36 MB); the rest loads from
# the root file system.
INITRAMFS_MODULES = "virtio_pci\nvirtio_blk\next4\ncrc32c_generic\n"
DISK_SIZE = "3G"
_CACHE_NAME = re.compile(r"realguest-[0-9a-f]{12}")
# Bump when build_image or configure_root changes what ends up in the image.
RECIPE_VERSION = 2


@dataclasses.dataclass(frozen=True)
class GuestImage:
    """A built guest: its disk (qcow2, never written to: boot an overlay) and its kernel."""

    disk: Path
    kernel: Path
    initrd: Path


def missing_host_files() -> list[str]:
    """Return the files of HOST_PACKAGES that are not on this machine."""
    return [path for path in HOST_PROGRAMS if not Path(path).exists()]


def install_host_packages() -> None:
    """Install HOST_PACKAGES with apt-get; raise RuntimeError saying why when that fails."""
    if os.geteuid() != 0:
        raise RuntimeError(
            "installing QEMU and debootstrap needs root; run as root or install them first: "
            f"apt-get install -y {' '.join(HOST_PACKAGES)}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", *HOST_PACKAGES],
    ):
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise RuntimeError(
                "apt-get is not available: this tier needs a Debian-like host"
            ) from None
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()[-2000:]}")


def recipe_hash() -> str:
    """Return a short hash of this recipe: a changed recipe gets a new cache directory."""
    recipe = "\0".join(
        [str(RECIPE_VERSION), SUITE, *GUEST_PACKAGES, CLOUD_CFG, INITRAMFS_MODULES, DISK_SIZE]
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def cache_dir() -> Path:
    """Return where the image of the current recipe is cached."""
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return root / "github-runner-image-builder" / f"realguest-{recipe_hash()}"


def cached_image(directory: Path) -> GuestImage | None:
    """Return the image cached in `directory`, or None when it is not complete."""
    image = GuestImage(
        disk=directory / "disk.qcow2",
        kernel=directory / "vmlinuz",
        initrd=directory / "initrd.img",
    )
    # `complete` is written last: a build killed half-way is never taken for an image.
    if (directory / "complete").exists() and all(
        path.exists() for path in (image.disk, image.kernel, image.initrd)
    ):
        return image
    return None


def ensure_image(directory: Path, log: Path) -> GuestImage:
    """Return the cached guest image, building it first when there is none."""
    found = cached_image(directory)
    if found:
        return found
    directory.parent.mkdir(parents=True, exist_ok=True)
    # One build at a time: a second test session waits, then takes the first one's image.
    with _locked(directory.parent / "realguest.lock"):
        found = cached_image(directory)
        if found:
            return found
        # Build next to the cache (same file system), then move into place in one rename.
        with tempfile.TemporaryDirectory(prefix="realguest-build-", dir=directory.parent) as work:
            staging = Path(work) / "image"
            staging.mkdir()
            build_image(Path(work) / "root", staging, log)
            if directory.exists():
                shutil.rmtree(directory)
            staging.rename(directory)
        # Images of older recipes are never used again.
        for old in directory.parent.glob("realguest-*"):
            if old != directory and _CACHE_NAME.fullmatch(old.name):
                shutil.rmtree(old, ignore_errors=True)
    built = cached_image(directory)
    if built is None:
        raise RuntimeError(f"the guest image build left no complete image in {directory}")
    return built


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_image(root: Path, out: Path, log: Path) -> None:
    """Build the guest into `out` (disk.qcow2, vmlinuz, initrd.img), using `root` as scratch."""
    started = time.monotonic()
    _run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(GUEST_PACKAGES)}",
            SUITE,
            str(root),
            MIRROR,
        ],
        log,
    )
    configure_root(root)
    # Regenerate the initramfs with the short module list; /proc is not needed for that.
    _run(["chroot", str(root), "update-initramfs", "-u", "-k", "all"], log)
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if len(kernels) != 1 or len(initrds) != 1:
        raise RuntimeError(f"expected one kernel and one initrd in {root / 'boot'}")
    shutil.copyfile(kernels[0], out / "vmlinuz")
    shutil.copyfile(initrds[0], out / "initrd.img")
    raw = out / "disk.raw"
    _run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(root), str(raw), DISK_SIZE], log)
    _run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(out / "disk.qcow2")], log)
    raw.unlink()
    (out / "complete").write_text(f"built in {time.monotonic() - started:.0f} s\n")


def configure_root(root: Path) -> None:
    """Write the files that turn the debootstrapped root into a cloud-init guest."""
    (root / "etc/cloud/cloud.cfg.d/90-realguest.cfg").write_text(CLOUD_CFG)
    (root / "etc/fstab").write_text("LABEL=root / ext4 defaults,errors=remount-ro 0 1\n")
    # debootstrap copies the host's name; cloud-init sets the guest's from the metadata.
    (root / "etc/hostname").write_text("localhost\n")
    (root / "etc/initramfs-tools/modules").write_text(INITRAMFS_MODULES)
    (root / "etc/initramfs-tools/conf.d/realguest").write_text("MODULES=list\n")
    # The first NIC by DHCP until cloud-init writes its own network configuration.
    interfaces = root / "etc/network/interfaces"
    interfaces.write_text("source /etc/network/interfaces.d/*\nauto lo\niface lo inet loopback\n")
    # An image must not carry a machine id: each boot of a copy makes its own.
    (root / "etc/machine-id").write_text("")
    # Like a cloud image: no package lists or downloaded packages (apt-get update comes first
    # in the user-data). This also halves the disk.
    for pattern in ("var/lib/apt/lists/*", "var/cache/apt/archives/*.deb", "var/cache/apt/*.bin"):
        for path in root.glob(pattern):
            if path.is_file():
                path.unlink()


def _run(argv: list[str], log: Path) -> None:
    """Run one build command, appending its output to `log`; raise naming it when it fails."""
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed (exit {done.returncode}); see {log}")
