"""The cloud-init user-data a builder VM runs: a bash script rendered from a Jinja2 template.

The script prepares a fresh Ubuntu cloud image for GitHub Actions runners, wipes what must not
survive in the image, prints the completion marker (see `marker`) on the serial console and
powers the VM off. This module validates the options, decides every value the script needs and
renders `user-data.sh.j2`; it never talks to a cloud or runs the script. How a script renders
(the quoting guard, the shared parts, the checks after) is `templating`'s.
"""

import dataclasses
import re
from collections.abc import Mapping
from secrets import token_hex

from github_runner_image_builder.guest import contents, marker, templating
from image_builder_contract import platforms, rules

# The steps the script runs, in order; a failure marker names one of them. `proxy` and `script`
# run only when a proxy or a script URL is given.
STEPS: tuple[str, ...] = (
    "hostname",
    "proxy",
    "apt",
    "packages",
    "system",
    "runner",
    "users",
    "script",
    "cleanup",
)
# Named by the failure marker if the script dies outside any step (it should not).
UNKNOWN_STEP = "unknown"
# The word the script's log lines start with (`grib: step apt (at 12s)`).
LOG_PREFIX = "grib"
TEMPLATE = "user-data.sh.j2"

HOSTNAME = "github-runner"

# focal's archive has no gh and jammy's is years old (2.4): use cli.github.com's repository.
_GH_FROM_GITHUB: frozenset[str] = frozenset({"focal", "jammy"})
# The serial port a Nova (libvirt) console log records, per VM architecture: ttyS0 on x86, the
# PL011 UART on the aarch64 `virt` machine, the SCLP console on s390x, the hypervisor console on
# POWER. The script falls back to /dev/console.
_SERIAL_CONSOLE: Mapping[str, str] = {
    "amd64": "/dev/ttyS0",
    "arm64": "/dev/ttyAMA0",
    "s390x": "/dev/ttysclp0",
    "ppc64el": "/dev/hvc0",
}

_NONCE = re.compile(r"[0-9a-f]{8,64}")


@dataclasses.dataclass(frozen=True)
class UserDataOptions:
    """What one builder VM's user-data is rendered from; validated on construction.

    Attributes:
        base: the Ubuntu release the builder boots.
        arch: the CPU architecture of the builder.
        nonce: this build's nonce, from `marker.new_nonce()`.
        runner_version: the GitHub Actions runner version (2.321.0); None for the latest.
        script_url: an https URL of a script to run as root at the end of the build.
        script_secrets: environment variable name -> value, given to that script only.
        proxy: an HTTP proxy (host:port or http(s)://[user:password@]host:port) for apt,
            snap, docker and the build's environment; the cleanup removes it before the
            snapshot, so its credentials stay out of the image.
        runner_binary_repo: the GitHub repository (owner/name) whose releases carry the
            runner tarballs.
        canary: a random value planted where the secrets are (the user-data, the script's
            environment); the verification guest looks for it on the whole disk.

    """

    base: platforms.Base
    arch: platforms.Arch
    nonce: str
    runner_version: str | None = None
    script_url: str | None = None
    script_secrets: Mapping[str, str] = dataclasses.field(default_factory=dict)
    proxy: str | None = None
    runner_binary_repo: str = platforms.UPSTREAM_RUNNER_REPO
    canary: str = dataclasses.field(default_factory=lambda: token_hex(16))

    def __post_init__(self) -> None:
        """Reject options the script could not use, naming the option and the fix."""
        platforms.check_runner_base(self.base)
        if self.arch.vm_ubuntu not in _SERIAL_CONSOLE:
            raise ValueError(f"unsupported architecture {self.arch.github!r}")
        platforms.check_pair(self.base, self.arch)
        platforms.check_runner_repo(self.runner_binary_repo, self.arch)
        if not _NONCE.fullmatch(self.nonce):
            raise ValueError(
                f"invalid nonce {self.nonce!r}: expected 8-64 lowercase hex digits "
                "(use marker.new_nonce())"
            )
        # The option rules live in the contract, which the charm applies too.
        if self.runner_version is not None:
            rules.normalize_runner_version(self.runner_version)
        if self.script_url is not None:
            rules.check_script_url(self.script_url)
        for name, value in self.script_secrets.items():
            rules.check_secret(name, value)
        if self.proxy is not None:
            rules.normalize_proxy(self.proxy)
        if not _NONCE.fullmatch(self.canary):
            raise ValueError(f"invalid canary {self.canary!r}: expected 8-64 lowercase hex digits")


def render_user_data(options: UserDataOptions) -> str:
    """Return the bash script a builder VM runs as its cloud-init user-data."""
    text = templating.render(user_data_script(options))
    # The nonce line is the one a stand-in hypervisor reads (marker.find_nonce): it must be there.
    if marker.find_nonce(text, marker.NONCE_VARIABLE) != options.nonce:
        raise templating.ScriptError(
            f"{TEMPLATE} has no `readonly {marker.NONCE_VARIABLE}=<nonce>` line that "
            "marker.find_nonce reads"
        )
    return text


def user_data_script(options: UserDataOptions) -> templating.Script:
    """Return what the builder's script renders from; ValueError when the values cannot fit."""
    steps = [
        step
        for step in STEPS
        if (step != "proxy" or options.proxy) and (step != "script" or options.script_url)
    ]
    # Secrets are only rendered for a script that receives them.
    secrets = sorted(options.script_secrets.items()) if options.script_url else []
    proxy = rules.normalize_proxy(options.proxy) if options.proxy else ""
    # The charm checks the same room, so it blocks before a build would fail here.
    problem = rules.user_data_room_problem(options.script_secrets, options.script_url or "", proxy)
    if problem:
        raise ValueError(problem)
    functions = [templating.step_function(step) for step in steps]
    return templating.Script(
        template=TEMPLATE,
        values=dict(
            nonce=options.nonce,
            hostname=HOSTNAME,
            base=options.base.codename,
            deb_arch=options.arch.vm_ubuntu,
            runner_arch=options.arch.github,
            runner_repo=options.runner_binary_repo,
            foreign_arch=options.arch.ubuntu if options.arch.vm else "",
            npm_packages=contents.NPM_PACKAGES,
            runner_version=(
                rules.normalize_runner_version(options.runner_version)
                if options.runner_version
                else ""
            ),
            proxy=proxy,
            script_url=options.script_url or "",
            secrets=secrets,
            packages=contents.packages(options.base.codename, options.arch.ubuntu),
            snaps=contents.SNAPS,
            runner_dir=contents.RUNNER_DIR,
            user=contents.USER,
            user_groups=",".join(contents.USER_GROUPS),
            runner_alias=contents.RUNNER_ALIAS,
            canary=options.canary,
            facts_word=marker.FACTS_WORD,
            machine_id_fact=marker.MACHINE_ID_FACT,
            runner_version_fact=marker.RUNNER_VERSION_FACT,
            gh_from_github=options.base.codename in _GH_FROM_GITHUB,
            console=serial_console(options.arch),
            step_functions=functions,
            success_line=marker.success_line(options.nonce),
            failure_lines={step: marker.failure_line(options.nonce, step) for step in steps},
            unknown_line=marker.failure_line(options.nonce, UNKNOWN_STEP),
            release_py=templating.program("runner_release.py"),
            log_prefix=LOG_PREFIX,
            downloads=True,
        ),
        functions=functions,
    )


def serial_console(arch: platforms.Arch) -> str:
    """Return the serial device a Nova console log records for this architecture."""
    return _SERIAL_CONSOLE[arch.vm_ubuntu]
