"""The cloud-init user-data a builder VM runs: a bash script rendered from a Jinja2 template.

The script prepares a fresh Ubuntu cloud image for GitHub Actions runners, wipes what must not
survive in the image, prints the completion marker (see `marker`) on the serial console and
powers the VM off. This module validates the options, decides every value the script needs and
renders the template; it never talks to a cloud or runs the script.

Every value reaches the script through the `shquote` filter, and the template environment
refuses to output anything that did not pass through it, so no option or secret can inject shell.
"""

import base64
import dataclasses
import re
import shlex
import urllib.parse
from collections.abc import Mapping
from secrets import token_hex

import jinja2

from github_runner_image_builder import contract, marker, platforms

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

HOSTNAME = "github-runner"

SUPPORTED_BASES: tuple[str, ...] = ("focal", "jammy", "noble", "resolute")
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

# Nova rejects user-data longer than 65535 bytes once base64-encoded.
MAX_USER_DATA_BASE64 = 65535

_VERSION = re.compile(r"v?([0-9]+\.[0-9]+\.[0-9]+)")
_NONCE = re.compile(r"[0-9a-f]{8,64}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+")
# RFC 3986 userinfo: unreserved, percent-encoded, sub-delims and ":"; no quote or backslash can
# then break the apt and systemd files the proxy is written into.
_USERINFO = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=:-]|%[0-9A-Fa-f]{2})+")
_PROXY_USERINFO = re.compile(r"^(\s*(?:[A-Za-z][A-Za-z0-9+.-]*://)?)[^/]*@")
# Names the script or the shell itself depends on: a secret may not replace them.
_RESERVED_NAMES: frozenset[str] = frozenset(
    {"PATH", "HOME", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "PS4", "CDPATH"}
)


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
        if self.base.codename not in SUPPORTED_BASES:
            raise ValueError(
                f"unsupported base {self.base.codename!r}; "
                f"the user-data supports {', '.join(SUPPORTED_BASES)}"
            )
        if self.arch.vm_ubuntu not in _SERIAL_CONSOLE:
            raise ValueError(f"unsupported architecture {self.arch.github!r}")
        platforms.check_pair(self.base, self.arch)
        platforms.check_runner_repo(self.runner_binary_repo, self.arch)
        if not _NONCE.fullmatch(self.nonce):
            raise ValueError(
                f"invalid nonce {self.nonce!r}: expected 8-64 lowercase hex digits "
                "(use marker.new_nonce())"
            )
        if self.runner_version is not None:
            normalize_runner_version(self.runner_version)
        if self.script_url is not None:
            check_script_url(self.script_url)
        for name, value in self.script_secrets.items():
            check_secret(name, value)
        if self.proxy is not None:
            normalize_proxy(self.proxy)
        if not _NONCE.fullmatch(self.canary):
            raise ValueError(f"invalid canary {self.canary!r}: expected 8-64 lowercase hex digits")


def normalize_runner_version(version: str) -> str:
    """Return a runner version as GitHub's release tags carry it without the `v` (2.321.0)."""
    match = _VERSION.fullmatch(version.strip())
    if not match:
        raise ValueError(
            f"invalid runner version {version!r}: expected MAJOR.MINOR.PATCH such as 2.321.0, "
            "or leave it unset for the latest release"
        )
    return match.group(1)


def check_script_url(url: str) -> None:
    """Reject a script URL that is not a plain https URL."""
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise ValueError(
            f"invalid script URL {url!r}: it contains whitespace or control characters "
            "(percent-encode them)"
        )
    try:
        parts = urllib.parse.urlsplit(url)
        hostname = parts.hostname
    except ValueError as exc:
        raise ValueError(f"invalid script URL {url!r}: {exc}") from None
    if parts.scheme != "https" or not hostname:
        raise ValueError(
            f"invalid script URL {url!r}: expected https://host/path (the script runs as root, "
            "so it must come over TLS)"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "invalid script URL: it carries credentials; serve the script without them and "
            "pass secrets to it as script secrets"
        )


def check_secret(name: str, value: str) -> None:
    """Reject a script secret whose name is not a usable environment variable name."""
    if not _ENV_NAME.fullmatch(name):
        raise ValueError(
            f"invalid script secret name {name!r}: use letters, digits and underscores, "
            "not starting with a digit"
        )
    if name in _RESERVED_NAMES or name.startswith(("GRIB_", "BASH_")):
        raise ValueError(
            f"script secret name {name!r} is reserved by the shell or the build script; rename it"
        )
    if "\0" in value:
        raise ValueError(f"script secret {name!r} contains a NUL byte, which no shell can hold")


def normalize_proxy(proxy: str) -> str:
    """Return a proxy as the URL apt, snap, docker and the environment take (http://host:port).

    Credentials (http://user:password@host:port) are kept: the build uses them and the cleanup
    removes the proxy before the snapshot. Error messages show the proxy without them.
    """
    text = proxy.strip()
    candidate = text if "://" in text else f"http://{text}"
    problem = _proxy_problem(candidate)
    if problem:
        raise ValueError(
            f"invalid proxy {redact_proxy(proxy)!r}: {problem}; expected host:port or "
            "http://[user:password@]host:port"
        )
    parts = urllib.parse.urlsplit(candidate)
    return f"{parts.scheme}://{parts.netloc}"


def redact_proxy(proxy: str) -> str:
    """Return a proxy URL with any user name and password replaced by ***, for messages."""
    return _PROXY_USERINFO.sub(r"\1***@", proxy)


def proxy_secrets(proxy: str) -> tuple[str, ...]:
    """Return the strings of a valid proxy that reveal its credentials, for redaction."""
    url = normalize_proxy(proxy)
    userinfo = urllib.parse.urlsplit(url).netloc.rpartition("@")[0]
    if not userinfo:
        return ()
    password = userinfo.partition(":")[2]
    decoded = (urllib.parse.unquote(userinfo), urllib.parse.unquote(password))
    found = (proxy.strip(), url, userinfo, password, *decoded)
    return tuple(v for v in dict.fromkeys(found) if v)


def _proxy_problem(url: str) -> str | None:
    """Return what is wrong with a proxy URL, or None when it is usable."""
    if any(ord(char) <= 0x20 or ord(char) >= 0x7F for char in url):
        return "it contains whitespace, control or non-ASCII characters"
    try:
        parts = urllib.parse.urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        return "the host is not a hostname or an IP address"
    try:
        port = parts.port
    except ValueError:
        return "the port is not a number from 1 to 65535"
    problem: str | None = None
    if parts.scheme not in ("http", "https"):
        problem = f"scheme {parts.scheme!r} is not http or https"
    elif "@" in parts.netloc and not _USERINFO.fullmatch(parts.netloc.rsplit("@", 1)[0]):
        problem = (
            "its user name or password holds characters a URL cannot carry as they are; "
            "percent-encode them"
        )
    elif parts.path not in ("", "/") or parts.query or parts.fragment:
        problem = "it has a path, query or fragment"
    elif not hostname or not _valid_host(hostname, parts.netloc):
        problem = "the host is not a hostname or an IP address"
    elif port == 0 or parts.netloc.endswith(":"):
        problem = "the port is not a number from 1 to 65535"
    return problem


def _valid_host(hostname: str, netloc: str) -> bool:
    """Say whether a proxy host is a DNS name, an IPv4 address or a bracketed IPv6 address."""
    if netloc.startswith("["):
        return bool(_IPV6.fullmatch(hostname)) and ":" in hostname
    return bool(_HOSTNAME.fullmatch(hostname))


class _Quoted(str):
    """A value already made safe for the shell by `shquote`."""

    __slots__ = ()


def _shquote(value: object) -> _Quoted:
    """Quote a string for bash so it is always one inert word."""
    if not isinstance(value, str):
        raise TypeError(f"shquote takes strings, not {type(value).__name__}")
    if "\0" in value:
        raise ValueError("a NUL byte cannot be passed to the shell")
    return _Quoted(shlex.quote(value))


def _only_quoted(value: object) -> object:
    """Refuse to render any `{{ }}` value that did not pass through `shquote`."""
    if not isinstance(value, _Quoted):
        raise TypeError(
            f"template output {value!r} is not shell-quoted: pipe it through | shquote"
        )
    return value


def template_environment() -> jinja2.Environment:
    """Return the Jinja2 environment the user-data templates (builder, verify) render in."""
    # A bash script, not HTML: `shquote` and `_only_quoted` do the escaping.
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("github_runner_image_builder", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_only_quoted,
    )
    environment.filters["shquote"] = _shquote
    return environment


def render_user_data(options: UserDataOptions) -> str:
    """Return the bash script a builder VM runs as its cloud-init user-data."""
    steps = [
        step
        for step in STEPS
        if (step != "proxy" or options.proxy) and (step != "script" or options.script_url)
    ]
    # Secrets are only rendered for a script that receives them.
    secrets = sorted(options.script_secrets.items()) if options.script_url else []
    text = (
        template_environment()
        .get_template("user-data.sh.j2")
        .render(
            nonce=options.nonce,
            hostname=HOSTNAME,
            base=options.base.codename,
            deb_arch=options.arch.vm_ubuntu,
            runner_arch=options.arch.github,
            runner_repo=options.runner_binary_repo,
            foreign_arch=options.arch.ubuntu if options.arch.vm else "",
            npm_packages=contract.NPM_PACKAGES,
            runner_version=(
                normalize_runner_version(options.runner_version) if options.runner_version else ""
            ),
            proxy=normalize_proxy(options.proxy) if options.proxy else "",
            script_url=options.script_url or "",
            secrets=secrets,
            packages=contract.packages(options.base.codename, options.arch.ubuntu),
            snaps=contract.SNAPS,
            runner_dir=contract.RUNNER_DIR,
            user=contract.USER,
            user_groups=",".join(contract.USER_GROUPS),
            runner_alias=contract.RUNNER_ALIAS,
            canary=options.canary,
            facts_word=marker.FACTS_WORD,
            gh_from_github=options.base.codename in _GH_FROM_GITHUB,
            console=serial_console(options.arch),
            steps=steps,
            success_line=marker.success_line(options.nonce),
            failure_lines={step: marker.failure_line(options.nonce, step) for step in steps},
            unknown_line=marker.failure_line(options.nonce, UNKNOWN_STEP),
        )
    )
    check_length(text)
    return text


def serial_console(arch: platforms.Arch) -> str:
    """Return the serial device a Nova console log records for this architecture."""
    return _SERIAL_CONSOLE[arch.vm_ubuntu]


def check_length(text: str) -> None:
    """Raise ValueError when Nova would refuse this user-data as too long."""
    encoded = len(base64.b64encode(text.encode()))
    if encoded > MAX_USER_DATA_BASE64:
        raise ValueError(
            f"the user-data is {encoded} bytes base64-encoded, more than the "
            f"{MAX_USER_DATA_BASE64} Nova accepts; shorten the script secrets"
        )
