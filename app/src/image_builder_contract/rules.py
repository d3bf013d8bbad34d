"""What a valid option value is, for every option the charm hands the CLI.

Each function raises ValueError with a message naming the problem and the fix; the CLI turns it
into a usage error, the charm into a Blocked status naming its own option.
"""

import re
import shlex
import urllib.parse
from collections.abc import Mapping

# Script secrets reach the CLI as environment variables SECRET_ENV_PREFIX + <NAME>.
SECRET_ENV_PREFIX = "IMAGE_BUILDER_SECRET_"  # noqa: S105 - a name prefix, not a secret
# The CLI reads the build's proxy from here: it may carry credentials, so never in argv.
PROXY_ENV = "IMAGE_BUILDER_PROXY"
# Names the build script or the shell itself depends on: a secret may not replace them.
RESERVED_SECRET_NAMES: frozenset[str] = frozenset(
    {"PATH", "HOME", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "PS4", "CDPATH"}
)
RESERVED_SECRET_PREFIXES: tuple[str, ...] = ("GRIB_", "BASH_")

_VERSION = re.compile(r"v?([0-9]+\.[0-9]+\.[0-9]+)")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+")
# RFC 3986 userinfo: unreserved, percent-encoded, sub-delims and ":"; no quote or backslash can
# then break the apt and systemd files the proxy is written into.
_USERINFO = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=:-]|%[0-9A-Fa-f]{2})+")
# What a URL's authority is when it carries no credentials: host or [IPv6], optional :port.
_PLAIN_AUTHORITY = re.compile(r"(?:[A-Za-z0-9._~-]*|\[[0-9A-Fa-f:.]*\])(?::[0-9]*)?")
# A word of free text, delimited the way messages, reprs and command lines delimit a URL.
_WORD = re.compile(r"[^\s'\"]+")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
# A build's id (the charm's run id): tags every server, group and image the build creates.
_BUILD_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


def split_list(text: str) -> list[str]:
    """Return the items of a comma-separated list, stripped, empty items dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


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
    """Reject a script URL that is not a plain https URL without credentials."""
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise ValueError(
            f"invalid script URL {redact_url(url)!r}: it contains whitespace or control "
            "characters (percent-encode them)"
        )
    try:
        parts = urllib.parse.urlsplit(url)
        hostname = parts.hostname
    except ValueError as exc:
        raise ValueError(f"invalid script URL {redact_url(url)!r}: {exc}") from None
    if parts.scheme != "https" or not hostname:
        raise ValueError(
            f"invalid script URL {redact_url(url)!r}: expected https://host/path (the script runs "
            "as root, so it must come over TLS)"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "invalid script URL: it carries credentials; serve the script without them and "
            "pass secrets to it as script secrets"
        )


def check_build_id(build_id: str) -> None:
    """Raise ValueError unless `build_id` can tag a build's resources (1-64 of A-Z a-z 0-9 -)."""
    if not _BUILD_ID.fullmatch(build_id):
        raise ValueError(
            f"invalid build id {build_id[:80]!r}: expected 1-64 letters, digits or '-'"
        )


def secret_name_problem(name: str) -> str | None:
    """Return why `name` cannot hold a script secret (completes "NAME ..."), or None."""
    if not _ENV_NAME.fullmatch(name):
        return (
            "is not a shell variable name (letters, digits and underscores, "
            "not starting with a digit)"
        )
    if name in RESERVED_SECRET_NAMES or name.startswith(RESERVED_SECRET_PREFIXES):
        return "is reserved by the shell or the build script"
    return None


def check_secret(name: str, value: str) -> None:
    """Reject a script secret whose name is no usable variable or whose value no shell holds."""
    problem = secret_name_problem(name)
    if problem:
        raise ValueError(f"invalid script secret name {name!r}: it {problem}; rename it")
    if "\0" in value:
        raise ValueError(f"script secret {name!r} contains a NUL byte, which no shell can hold")


def secret_env_name(key: str) -> str:
    """Return the variable name a Juju secret key becomes (`api-token` → API_TOKEN)."""
    return key.upper().replace("-", "_")


class SecretKeyError(ValueError):
    """Keys of a secret that cannot become the script's variables, and why."""

    def __init__(self, keys: tuple[str, ...], problem: str) -> None:
        named = " and ".join(repr(key) for key in keys)
        super().__init__(f"key{'s' if len(keys) > 1 else ''} {named} {problem}")
        self.keys = keys
        self.problem = problem


def secret_environment(content: Mapping[str, str]) -> dict[str, str]:
    """Return {variable name: value} for a secret's keys; raise SecretKeyError naming the keys.

    Two keys that become the same name (`api-token`, `api_token`) are refused: one would
    silently replace the other.
    """
    env: dict[str, str] = {}
    keys_of: dict[str, str] = {}
    for key, value in sorted(content.items()):
        name = secret_env_name(key)
        if name in keys_of:
            raise SecretKeyError((keys_of[name], key), f"both become {name}; rename one of them")
        problem = secret_name_problem(name)
        if problem:
            raise SecretKeyError((key,), f"becomes {name}, which {problem}; rename it")
        if "\0" in value:
            raise SecretKeyError((key,), "holds a NUL byte, which no shell variable can hold")
        keys_of[name] = key
        env[name] = value
    return env


def normalize_proxy(proxy: str) -> str:
    """Return a proxy as the URL apt, snap, docker and the environment take (http://host:port).

    Credentials (http://user:password@host:port) are kept: the build uses them and its cleanup
    removes the proxy before the snapshot. Error messages show the proxy without them.
    """
    text = proxy.strip()
    candidate = text if "://" in text else f"http://{text}"
    problem = proxy_problem(candidate)
    if problem:
        raise ValueError(
            f"invalid proxy {redact_url(proxy)!r}: {problem}; expected host:port or "
            "http://[user:password@]host:port"
        )
    parts = urllib.parse.urlsplit(candidate)
    return f"{parts.scheme}://{parts.netloc}"


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


def redact_url(url: str) -> str:
    """Return a URL with any user:password replaced by ***, for messages and logs.

    The userinfo ends at the authority's last `@`. When the authority is no plain host[:port]
    and an `@` follows later (a password holding `/`, `?` or `#` unencoded), everything up to
    the URL's last `@` goes: shown too little beats a password shown.
    """
    scheme, sep, rest = url.rpartition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        return f"{scheme}{sep}***@{rest[authority.rindex('@') + 1 :]}"
    if "@" in rest and not _PLAIN_AUTHORITY.fullmatch(authority):
        return f"{scheme}{sep}***@{rest[rest.rindex('@') + 1 :]}"
    return url


def redact_urls(text: str) -> str:
    """Return `text` (a message, a command line) with every URL's user:password replaced.

    Linear in the text (a cloud's error body may be megabytes): word by word, and only words
    holding an `@` are looked at. A word without a scheme counts when a `:` comes before its
    `@` (`user:password@host`, also after an option's `=`); an e-mail address does not.
    """
    return _WORD.sub(lambda match: _redact_word(match.group(0)), text)


def _redact_word(word: str) -> str:
    if "@" not in word:
        return word
    start = word.find("://")
    if start > 0:
        while start > 0 and word[start - 1] in _SCHEME_CHARS:
            start -= 1
        return word[:start] + redact_url(word[start:])
    # No scheme: the value of `--flag=value`, or the word itself.
    start = word.index("=") + 1 if word.startswith("-") and "=" in word else 0
    userinfo = word[start : word.rindex("@")]
    return f"{word[:start]}***{word[word.rindex('@') :]}" if ":" in userinfo else word


def proxy_problem(url: str) -> str | None:
    """Return what is wrong with a proxy URL (scheme://host:port), or None when it is usable."""
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


# Room in the builder's user-data for what the operator gives: the script secrets, the script
# URL and the proxy. Nova refuses user-data over 65535 bytes base64-encoded (49149 bytes before);
# the rest of the script takes up to 18.3 KB, and app/tests/test_userdata.py renders a user-data
# that fills this room, for every base and arch, to prove it still fits.
USER_DATA_ROOM = 28_000
# What each secret costs besides its quoted name and value: its template lines (a shellcheck
# comment, `export`, `=`, indentation and newlines: 97 bytes).
SECRET_LINE_COST = 100


def operator_data_size(secrets: Mapping[str, str], script_url: str, proxy: str) -> int:
    """Return the bytes the operator's values take in the builder's user-data, shell-quoted.

    The secrets are rendered only for a script (no script URL: they cost nothing).
    """
    size = len(shlex.quote(script_url)) + len(shlex.quote(proxy))
    if script_url:
        size += sum(
            SECRET_LINE_COST + len(shlex.quote(name)) + len(shlex.quote(value))
            for name, value in secrets.items()
        )
    return size


def user_data_room_problem(secrets: Mapping[str, str], script_url: str, proxy: str) -> str | None:
    """Return why the operator's values do not fit in the builder's user-data, or None."""
    size = operator_data_size(secrets, script_url, proxy)
    if size <= USER_DATA_ROOM:
        return None
    return (
        f"the script secrets, script URL and proxy take {size} bytes of the builder's "
        f"user-data, more than the {USER_DATA_ROOM} it has room for (Nova's limit); "
        "shorten or remove secret values, or fetch large files from the script instead"
    )
