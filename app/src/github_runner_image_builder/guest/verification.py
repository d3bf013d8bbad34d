"""What verifying a new image means: the checks, the test server's user-data, the verdict.

A test server boots from the snapshot with a user-data rendered from `verify.sh.j2`. It runs
the checks below against the image contract (`contract`), prints one result line on its
console (`marker.verify_line`) and powers off. This module renders that script, judges the
reported result and turns the software report into Glance properties; it talks to no cloud.

The user-data carries no secret: each script secret becomes a salted SHA-256 with its length
(the guest hashes candidate strings of that length), and the build's canary (planted next to
the secrets by the builder's user-data) is split in two halves, so the whole value is on no
disk unless it leaked from the build.
"""

import dataclasses
import hashlib
import re
import secrets
from collections.abc import Mapping

from github_runner_image_builder.guest import contents, marker, templating, userdata
from github_runner_image_builder.images import properties as keys
from image_builder_contract import platforms, rules
from image_builder_contract.checks import Check

# Every check, in the order the guest runs them; `script` only with a verify script URL.
CHECKS: tuple[str, ...] = (
    "fresh-instance",
    "runner",
    "docker",
    "users",
    "tools",
    "services",
    "paths",
    "secrets",
    "proxy",
    "script",
)
# The word the script's log lines start with (`grib-verify: check docker: pass`).
LOG_PREFIX = "grib-verify"
TEMPLATE = "verify.sh.j2"
# Secrets shorter than this are not searched for: too many strings match by chance, and the
# digest of so short a value would be easy to reverse.
MIN_SECRET_LENGTH = 8
GLANCE_VALUE_MAX = 255  # Glance refuses longer property values
SOFTWARE_PROPERTY_PREFIX = keys.SOFTWARE_PREFIX
VERIFIED_PROPERTY = keys.VERIFIED
CHECKS_PROPERTY = keys.CHECKS
_PROPERTY_KEY = re.compile(r"[^a-z0-9_]")


class VerifyError(Exception):
    """The image failed verification; `checks` are every check and its outcome (empty: none)."""

    def __init__(self, message: str, checks: tuple[Check, ...] = ()) -> None:
        super().__init__(message)
        self.checks = checks


@dataclasses.dataclass(frozen=True)
class VerifyOptions:
    """What one test server's user-data is rendered from.

    Attributes:
        base: the Ubuntu release of the image.
        arch: its architecture (the console device differs).
        nonce: this verification's nonce, from `marker.new_nonce()`.
        builder_nonce: the builder's nonce: no file under /var/lib/cloud may hold it.
        builder_instance_id: the builder server's ID, cloud-init's instance-id there.
        builder_machine_id: the builder's machine-id, "" when it did not report it.
        runner_version: the runner version the build installed, "" when unknown.
        proxy: the proxy the image must carry ("" for none), per the contract.
        canary: the canary the builder's user-data planted.
        script_secrets: the build's script secrets, only their digests are rendered.
        script_url: an https URL of the operator's smoke test, run last as root.

    """

    base: platforms.Base
    arch: platforms.Arch
    nonce: str
    builder_nonce: str
    builder_instance_id: str
    builder_machine_id: str = ""
    runner_version: str = ""
    proxy: str = ""
    canary: str = ""
    script_secrets: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    script_url: str | None = None

    def __post_init__(self) -> None:
        """Reject a script URL that is not plain https, as for the build's script."""
        if self.script_url is not None:
            rules.check_script_url(self.script_url)

    def checks(self) -> tuple[str, ...]:
        """Return the checks this verification runs."""
        return tuple(c for c in CHECKS if c != "script" or self.script_url)


def secret_digests(script_secrets: Mapping[str, str], salt: str) -> str:
    """Return `<length>:<sha256(salt + value)>` for each secret long enough to search for."""
    values = sorted({v for v in script_secrets.values() if len(v.encode()) >= MIN_SECRET_LENGTH})
    return " ".join(
        f"{len(v.encode())}:{hashlib.sha256((salt + v).encode()).hexdigest()}" for v in values
    )


def render_verify_user_data(options: VerifyOptions) -> str:
    """Return the bash script a test server runs as its cloud-init user-data."""
    text = templating.render(verify_script(options))
    # What a stand-in test server reads from the script (the local cloud's) must be there.
    if marker.find_nonce(text, marker.VERIFY_NONCE_VARIABLE) != options.nonce:
        raise templating.ScriptError(
            f"{TEMPLATE} has no `readonly {marker.VERIFY_NONCE_VARIABLE}=<nonce>` line"
        )
    if marker.find_checks(text) != list(options.checks()):
        raise templating.ScriptError(
            f"{TEMPLATE} has no `readonly {marker.CHECKS_VARIABLE}=...` line naming its checks"
        )
    return text


def verify_script(options: VerifyOptions) -> templating.Script:
    """Return what the test server's script renders from."""
    half = len(options.canary) // 2
    salt = secrets.token_hex(16)
    checks = options.checks()
    functions = [templating.check_function(c) for c in checks]
    return templating.Script(
        template=TEMPLATE,
        values=dict(
            nonce=options.nonce,
            checks=" ".join(checks),
            check_functions=functions,
            console=userdata.serial_console(options.arch),
            builder_instance_id=options.builder_instance_id,
            builder_machine_id=options.builder_machine_id,
            builder_nonce=options.builder_nonce,
            builder_nonce_variable=marker.NONCE_VARIABLE,
            runner_version=options.runner_version,
            runner_dir=contents.RUNNER_DIR,
            user=contents.USER,
            runner_alias=contents.RUNNER_ALIAS,
            user_groups=contents.USER_GROUPS,
            packages=contents.packages(options.base.codename, options.arch.ubuntu),
            snaps=[s.name for s in contents.SNAPS],
            tools=contents.TOOLS,
            services=contents.SERVICES,
            paths=[
                {"path": p.path, "owner": p.owner, "writable_word": "yes" if p.writable else "no"}
                for p in contents.PATHS
            ],
            proxy=options.proxy,
            canary_head=options.canary[:half],
            canary_tail=options.canary[half:],
            secret_salt=salt,
            secret_digests=secret_digests(options.script_secrets, salt),
            script_url=options.script_url or "",
            find_secrets_py=templating.program("find_secrets.py"),
            verify_word=marker.VERIFY_WORD,
            check_row=marker.CHECK_ROW,
            software_row=marker.SOFTWARE_ROW,
            check_ok=marker.CHECK_OK,
            check_failed=marker.CHECK_FAILED,
            log_prefix=LOG_PREFIX,
            downloads=bool(options.script_url),
        ),
        functions=functions,
    )


def judge(console: str | None, options: VerifyOptions) -> marker.VerifyReport:
    """Return the guest's report when every check passed; raise VerifyError otherwise."""
    if console is None:
        raise VerifyError("the test server shut off but the cloud has no console log to read")
    report = marker.parse_verify(console, options.nonce)
    if report is None:
        tail = "\n".join(console.splitlines()[-10:])
        raise VerifyError(f"the test server shut off without a verification result; tail:\n{tail}")
    reported = {c.name for c in report.checks}
    missing = tuple(
        Check(name, False, "not reported (the guest's script stopped early)")
        for name in options.checks()
        if name not in reported
    )
    checks = report.checks + missing
    failed = tuple(c for c in checks if not c.ok)
    if failed:
        raise VerifyError(describe(failed), checks)
    return report


def describe(failed: tuple[Check, ...]) -> str:
    """Return the error naming each failed check with its detail: `docker: daemon not active`."""
    return "; ".join(f"{c.name}: {c.detail or 'failed'}" for c in failed)


def glance_value(value: str) -> str:
    """Return a property value Glance accepts: at most 255 characters."""
    return value if len(value) <= GLANCE_VALUE_MAX else value[: GLANCE_VALUE_MAX - 1] + "…"


def properties(report: marker.VerifyReport | None) -> dict[str, str]:
    """Return the Glance properties a verified (or, for None, an unverified) image carries."""
    if report is None:
        return {VERIFIED_PROPERTY: "false"}
    props = {
        f"{SOFTWARE_PROPERTY_PREFIX}{_PROPERTY_KEY.sub('_', name.lower())}": glance_value(version)
        for name, version in report.software.items()
        if version
    }
    props[VERIFIED_PROPERTY] = "true"
    props[CHECKS_PROPERTY] = glance_value(",".join(c.name for c in report.checks))
    return props
