"""The completion protocol between a builder VM and the CLI, over the VM's console log.

The guest prints exactly one marker line on its serial console just before it powers off:

    GRIB-BUILD-RESULT <nonce> success
    GRIB-BUILD-RESULT <nonce> failure <step>

The nonce is unique per builder server (the CLI puts it in the user-data), so a marker from an
earlier boot of the same disk, or text that merely quotes the protocol, is never mistaken for
this build's result. Steps are short words such as `apt`, `runner`, `script`, `cleanup`.
"""

import dataclasses
import re
import secrets

MARKER_WORD = "GRIB-BUILD-RESULT"
# The user-data script assigns the nonce to this shell variable on a line of its own
# (`GRIB_NONCE=<hex>`), so a stand-in hypervisor can find it without running the script.
NONCE_VARIABLE = "GRIB_NONCE"
_STEP = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclasses.dataclass(frozen=True)
class Marker:
    """What the guest reported: success, or failure at a named step."""

    success: bool
    step: str | None = None


def new_nonce() -> str:
    """Return a fresh nonce for one builder server."""
    return secrets.token_hex(8)


def find_nonce(user_data: str) -> str | None:
    """Return the nonce a rendered user-data script carries, or None."""
    match = re.search(rf"^\s*(?:readonly\s+)?{NONCE_VARIABLE}=([0-9a-f]+)\s*$", user_data, re.M)
    return match.group(1) if match else None


def success_line(nonce: str) -> str:
    """Return the console line a guest prints when every step succeeded."""
    return f"{MARKER_WORD} {nonce} success"


def failure_line(nonce: str, step: str) -> str:
    """Return the console line a guest prints when `step` failed."""
    if not _STEP.match(step):
        raise ValueError(f"invalid step name {step!r}")
    return f"{MARKER_WORD} {nonce} failure {step}"


def parse_console(console: str, nonce: str) -> Marker | None:
    """Return the last marker for `nonce` in a console log, or None when there is none."""
    found: Marker | None = None
    pattern = re.compile(
        rf"{re.escape(MARKER_WORD)} {re.escape(nonce)} (success|failure ([a-z0-9][a-z0-9_-]*))\s*$"
    )
    for line in console.splitlines():
        # Consoles interleave kernel messages and carriage returns; match the line's tail.
        match = pattern.search(line.rstrip("\r"))
        if match:
            found = Marker(success=match.group(1) == "success", step=match.group(2))
    return found
