"""The CLI's name for the shared words of bases, architectures and image names.

They are defined once, in `image_builder_contract` (which the charm ships too); this module
only lets the CLI's modules keep saying `platforms.parse_base`.
"""

from image_builder_contract.names import base_image_name, image_name
from image_builder_contract.platforms import (
    ARCHES,
    BASES,
    RUNNER_BASES,
    UPSTREAM_RUNNER_REPO,
    Arch,
    Base,
    check_pair,
    check_runner_base,
    check_runner_repo,
    parse_arch,
    parse_base,
)

__all__ = [
    "ARCHES",
    "BASES",
    "RUNNER_BASES",
    "UPSTREAM_RUNNER_REPO",
    "Arch",
    "Base",
    "base_image_name",
    "check_pair",
    "check_runner_base",
    "check_runner_repo",
    "image_name",
    "parse_arch",
    "parse_base",
]
