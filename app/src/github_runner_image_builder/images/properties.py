"""Every Glance property (and Nova metadata) key this CLI writes or reads, and what it says.

Our own keys start with `grib_`: a copy carries them (and Glance's `architecture`, `os_distro`,
`os_version`) to every cloud; `clean` and pruning recognise our images by them.
"""

from collections.abc import Mapping

from image_builder_contract import platforms

OWN_PREFIX = "grib_"
# Glance keeps these as image attributes of their own (openstacksdk: not in `properties`).
GLANCE_OWN = ("architecture", "os_distro", "os_version")

# Every image this CLI builds carries it (when it was built); an image without it (e.g. one
# built by Canonical's image builder under the same name) is never pruned here.
BUILT_BY_US = "grib_build_time"
# The build id (`build --build-id`): images and, as Nova metadata, servers.
BUILD_ID = "grib_build_id"
# Nova metadata of a server a build boots: the nonce its console marker carries.
NONCE = "grib_nonce"

# A base image: where it came from upstream.
UPSTREAM_SHA256 = "grib_upstream_sha256"
UPSTREAM_URL = "grib_upstream_url"
UPSTREAM_SERIAL = "grib_upstream_serial"

# A built image: what it was built from.
BASE = "grib_base"
ARCH = "grib_arch"
RUNNER_VERSION = "grib_runner_version"
RUNNER_BINARY_REPO = "grib_runner_binary_repo"
BASE_SERIAL = "grib_base_serial"  # the Ubuntu cloud image serial pinned, or "current"
BASE_IMAGE_ID = "grib_base_image_id"
BASE_IMAGE_SHA256 = "grib_base_image_sha256"

# A built image: its verification.
VERIFIED = "grib_verified"  # "true" or "false"
CHECKS = "grib_checks"  # the checks passed, comma-separated
SOFTWARE_PREFIX = "grib_sw_"  # grib_sw_<name>: the version the test server found


def ubuntu(base: platforms.Base, arch: platforms.Arch) -> dict[str, str]:
    """Return the Glance properties that describe an Ubuntu image of (base, arch)."""
    return {"architecture": arch.glance, "os_distro": "ubuntu", "os_version": base.version}


def carried(properties: Mapping[str, str]) -> dict[str, str]:
    """Return the properties a copy of our image carries (not Glance's own bookkeeping)."""
    return {
        key: value
        for key, value in properties.items()
        if key.startswith(OWN_PREFIX) or key in GLANCE_OWN
    }
