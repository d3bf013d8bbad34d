"""The completion protocol between a builder VM and the CLI, over the VM's console log.

The guest prints exactly one marker line on its serial console just before it powers off:

    GRIB-BUILD-RESULT <nonce> success
    GRIB-BUILD-RESULT <nonce> failure <step>

The nonce is unique per builder server (the CLI puts it in the user-data), so a marker from an
earlier boot of the same disk, or text that merely quotes the protocol, is never mistaken for
this build's result. Steps are short words such as `apt`, `runner`, `script`, `cleanup`.

A successful builder prints one facts line before its marker, which the verification compares
the image's first boot with:

    GRIB-BUILD-FACTS <nonce> machine-id=<id> runner-version=<version>

The verification guest (a server booted from the new image) prints one line too, its result:

    GRIB-VERIFY-RESULT <nonce> <base64 of tab-separated lines>

each line `check<TAB>name<TAB>pass|fail<TAB>detail` or `software<TAB>name<TAB>version`.
The words of these lines are defined here only: the templates receive them when rendered.
This module is standard library only: the local cloud's scripted guest loads it by path.
"""

import base64
import binascii
import dataclasses
import re
import secrets

from image_builder_contract.checks import Check

MARKER_WORD = "GRIB-BUILD-RESULT"
FACTS_WORD = "GRIB-BUILD-FACTS"
VERIFY_WORD = "GRIB-VERIFY-RESULT"
# The facts a successful builder reports (the verification reads both).
MACHINE_ID_FACT = "machine-id"
RUNNER_VERSION_FACT = "runner-version"
# The rows of a verification result, and a check's outcomes.
CHECK_ROW = "check"
SOFTWARE_ROW = "software"
CHECK_OK = "pass"
CHECK_FAILED = "fail"
# The user-data script assigns the nonce to this shell variable on a line of its own
# (`GRIB_NONCE=<hex>`), so a stand-in hypervisor can find it without running the script.
NONCE_VARIABLE = "GRIB_NONCE"
VERIFY_NONCE_VARIABLE = "GRIB_VERIFY_NONCE"
# The verification user-data names its checks on a line of its own: GRIB_CHECKS='a b c'.
CHECKS_VARIABLE = "GRIB_CHECKS"
_STEP = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclasses.dataclass(frozen=True)
class Marker:
    """What the guest reported: success, or failure at a named step."""

    success: bool
    step: str | None = None


def new_nonce() -> str:
    """Return a fresh nonce for one builder server."""
    return secrets.token_hex(8)


def find_nonce(user_data: str, variable: str = NONCE_VARIABLE) -> str | None:
    """Return the nonce a rendered user-data script carries, or None."""
    match = re.search(rf"^\s*(?:readonly\s+)?{variable}=([0-9a-f]+)\s*$", user_data, re.M)
    return match.group(1) if match else None


def find_checks(user_data: str) -> list[str]:
    """Return the check names a rendered verification user-data runs, in order."""
    match = re.search(rf"^readonly {CHECKS_VARIABLE}='?([a-z0-9 -]*)'?$", user_data, re.M)
    return match.group(1).split() if match else []


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


def facts_line(nonce: str, facts: dict[str, str]) -> str:
    """Return the facts line a successful builder prints before its marker."""
    return " ".join([FACTS_WORD, nonce, *(f"{key}={value}" for key, value in facts.items())])


def parse_facts(console: str, nonce: str) -> dict[str, str]:
    """Return the builder's facts (machine-id, runner-version) from its console; {} if none."""
    pattern = re.compile(rf"{re.escape(FACTS_WORD)} {re.escape(nonce)}((?: [a-z-]+=\S*)*)\s*$")
    facts: dict[str, str] = {}
    for line in console.splitlines():
        match = pattern.search(line.rstrip("\r"))
        if match:
            pairs = (item.split("=", 1) for item in match.group(1).split())
            facts = {key: value for key, value in pairs if value and value != "unknown"}
    return facts


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    """What the verification guest reported: every check, and the software it found."""

    checks: tuple[Check, ...]
    software: dict[str, str]

    @property
    def failed(self) -> tuple[Check, ...]:
        """The checks that did not pass."""
        return tuple(c for c in self.checks if not c.ok)


def _field(text: str) -> str:
    return " ".join(text.replace("\t", " ").split())


def verify_line(nonce: str, report: VerifyReport) -> str:
    """Return the line a verification guest prints (the guest's script builds the same)."""
    rows = [
        f"{CHECK_ROW}\t{_field(c.name)}\t{CHECK_OK if c.ok else CHECK_FAILED}\t{_field(c.detail)}"
        for c in report.checks
    ]
    rows += [f"{SOFTWARE_ROW}\t{_field(k)}\t{_field(v)}" for k, v in report.software.items()]
    payload = base64.b64encode(("\n".join(rows) + "\n").encode()).decode()
    return f"{VERIFY_WORD} {nonce} {payload}"


def _decode(payload: str) -> VerifyReport | None:
    try:
        text = base64.b64decode(payload, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return None
    checks: list[Check] = []
    software: dict[str, str] = {}
    for row in text.splitlines():
        fields = row.split("\t")
        if fields[0] == CHECK_ROW and len(fields) >= 3 and fields[2] in (CHECK_OK, CHECK_FAILED):
            detail = fields[3] if len(fields) > 3 else ""
            checks.append(Check(fields[1], fields[2] == CHECK_OK, detail.strip()))
        elif fields[0] == SOFTWARE_ROW and len(fields) >= 3 and fields[1]:
            software[fields[1]] = fields[2].strip()
    return VerifyReport(tuple(checks), software)


def parse_verify(console: str, nonce: str) -> VerifyReport | None:
    """Return the last verification result for `nonce` in a console log, or None."""
    pattern = re.compile(rf"{re.escape(VERIFY_WORD)} {re.escape(nonce)} ([A-Za-z0-9+/=]+)\s*$")
    found: VerifyReport | None = None
    for line in console.splitlines():
        match = pattern.search(line.rstrip("\r"))
        if match:
            found = _decode(match.group(1)) or found
    return found
