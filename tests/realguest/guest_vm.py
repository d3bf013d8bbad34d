"""Boot one real guest under QEMU the way Nova boots a builder server with config_drive=True.

The user-data reaches the guest on an OpenStack config drive: an ISO 9660 volume labelled
`config-2` holding openstack/latest/{meta_data.json,user_data}, made with the genisoimage flags
Nova uses and attached as a CD-ROM as libvirt does on x86. The serial port goes to a file: that
is what Nova's console log shows. The NIC is QEMU's user network with `restrict=on`: DHCP
answers, nothing gets out (a builder on a network with no route to the internet).

KVM is not usable on the machines this tier runs on, so QEMU emulates the CPU (TCG).
"""

import dataclasses
import json
import subprocess
import uuid
from pathlib import Path

HOSTNAME = "realguest-builder"


@dataclasses.dataclass(frozen=True)
class GuestFiles:
    """The per-boot files of one guest, all under one directory."""

    disk: Path
    config_drive: Path
    console: Path
    qemu_log: Path


def make_overlay(base_disk: Path, directory: Path) -> Path:
    """Return a new qcow2 disk backed by `base_disk`, so the cached image stays untouched."""
    disk = directory / "disk.qcow2"
    backing = ["-F", "qcow2", "-b", str(base_disk)]
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *backing, str(disk)], check=True)
    return disk


def meta_data(instance_id: str, meta: dict[str, str] | None = None) -> dict[str, object]:
    """Return the openstack/latest/meta_data.json Nova writes, with the fields cloud-init reads.

    `meta` is the server's metadata (Nova's `metadata=` on create_server).
    """
    return {
        "uuid": instance_id,
        "name": HOSTNAME,
        "hostname": HOSTNAME,
        "launch_index": 0,
        "availability_zone": "nova",
        "project_id": uuid.uuid4().hex,
        "meta": meta or {},
        "devices": [],
    }


def make_config_drive(user_data: str, directory: Path, meta: dict[str, str] | None = None) -> Path:
    """Write an OpenStack config drive holding `user_data` and return the ISO's path."""
    tree = directory / "config-drive"
    latest = tree / "openstack" / "latest"
    latest.mkdir(parents=True)
    (latest / "meta_data.json").write_text(json.dumps(meta_data(str(uuid.uuid4()), meta)))
    (latest / "user_data").write_text(user_data)
    (latest / "vendor_data.json").write_text("{}")
    iso = directory / "config-drive.iso"
    # The flags of nova.virt.configdrive (iso9660 format).
    subprocess.run(
        [
            "genisoimage",
            "-o",
            str(iso),
            "-ldots",
            "-allow-lowercase",
            "-allow-multidot",
            "-l",
            "-publisher",
            "github-runner-image-builder realguest",
            "-quiet",
            "-J",
            "-r",
            "-V",
            "config-2",
            str(tree),
        ],
        check=True,
    )
    return iso


def qemu_argv(kernel: Path, initrd: Path, files: GuestFiles) -> list[str]:
    """Return the QEMU command line that boots the guest once and exits when it stops."""
    return [
        "qemu-system-x86_64",
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "qemu64",
        "-smp",
        "2",
        "-m",
        "1024",
        "-display",
        "none",
        "-monitor",
        "none",
        # A guest that reboots instead of powering off ends QEMU too; the console tells which.
        "-no-reboot",
        "-serial",
        f"file:{files.console}",
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        "-append",
        "root=/dev/vda rw console=tty0 console=ttyS0",
        "-drive",
        f"file={files.disk},if=virtio,format=qcow2",
        "-drive",
        f"file={files.config_drive},media=cdrom,if=ide,readonly=on",
        "-netdev",
        "user,id=net0,restrict=on",
        "-device",
        "virtio-net-pci,netdev=net0",
    ]


def start(kernel: Path, initrd: Path, files: GuestFiles) -> "subprocess.Popen[bytes]":
    """Start QEMU in the background; its own messages go to `files.qemu_log`."""
    with files.qemu_log.open("wb") as log:
        return subprocess.Popen(
            qemu_argv(kernel, initrd, files),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def read_console(files: GuestFiles) -> str:
    """Return the serial console so far (what Nova's console log would show)."""
    try:
        return files.console.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
