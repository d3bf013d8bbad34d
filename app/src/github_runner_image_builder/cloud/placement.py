"""Choosing the builder server's flavor and network from what the cloud offers."""

import dataclasses
from collections.abc import Sequence

MIN_VCPUS = 2
MIN_RAM_MIB = 1024
MIN_DISK_GB = 20


class ChoiceError(Exception):
    """No flavor or network fits; the message says what is wrong and how to fix it."""


@dataclasses.dataclass(frozen=True)
class Flavor:
    """The parts of a Nova flavor that matter for a builder."""

    id: str
    name: str
    vcpus: int
    ram: int  # MiB
    disk: int  # GB


@dataclasses.dataclass(frozen=True)
class Network:
    """The parts of a Neutron network that matter for a builder."""

    id: str
    name: str
    subnet_ids: tuple[str, ...]


def _shortfalls(flavor: Flavor) -> list[str]:
    """Return each limit the flavor misses, in words."""
    missing = []
    if flavor.vcpus < MIN_VCPUS:
        missing.append(f"{flavor.vcpus} vCPU < {MIN_VCPUS}")
    if flavor.ram < MIN_RAM_MIB:
        missing.append(f"{flavor.ram} MiB RAM < {MIN_RAM_MIB}")
    if flavor.disk < MIN_DISK_GB:
        missing.append(f"{flavor.disk} GB disk < {MIN_DISK_GB}")
    return missing


def choose_flavor(flavors: Sequence[Flavor], wanted: str | None) -> Flavor:
    """Return the wanted flavor (name or ID) or the smallest big enough; raise ChoiceError."""
    limits = f"≥ {MIN_VCPUS} vCPU, ≥ {MIN_RAM_MIB} MiB RAM, ≥ {MIN_DISK_GB} GB disk"
    if wanted:
        matches = [f for f in flavors if wanted in (f.id, f.name)]
        if not matches:
            names = ", ".join(sorted(f.name for f in flavors)) or "none"
            raise ChoiceError(f"flavor {wanted!r} not found; flavors visible: {names}")
        flavor = matches[0]
        missing = _shortfalls(flavor)
        if missing:
            raise ChoiceError(
                f"flavor {wanted!r} is too small: {', '.join(missing)}; a builder needs {limits}"
            )
        return flavor
    usable = [f for f in flavors if not _shortfalls(f)]
    if not usable:
        raise ChoiceError(f"no flavor with {limits}; create one or pass --flavor")
    return min(usable, key=lambda f: (f.vcpus, f.ram, f.disk, f.name))


def choose_network(networks: Sequence[Network], wanted: str | None) -> Network:
    """Return the wanted network (name or ID) or the first with a subnet; raise ChoiceError."""
    if wanted:
        matches = [n for n in networks if wanted in (n.id, n.name)]
        if not matches:
            names = ", ".join(sorted(n.name for n in networks)) or "none"
            raise ChoiceError(f"network {wanted!r} not found; networks visible: {names}")
        if not matches[0].subnet_ids:
            raise ChoiceError(f"network {wanted!r} has no subnet; a builder needs an address")
        return matches[0]
    for network in networks:
        if network.subnet_ids:
            return network
    raise ChoiceError(
        "no usable network: none visible to the project has a subnet; pass --network"
    )
