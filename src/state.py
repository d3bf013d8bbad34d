"""Charm config and Juju secrets turned into typed, validated state.

Nothing here touches the machine or the cloud. A bad or missing value raises InvalidConfigError
naming the option and what is expected, which the charm shows as BlockedStatus.
"""

import functools
import hashlib
import json
import re
import urllib.parse
from collections.abc import Callable, Mapping

import ops
import pydantic

# The charm cannot import the CLI's package (it lives in its own venv), so it keeps the few
# words it must accept; the CLI's platforms module is the authority on what they mean.
ARCHITECTURES: dict[str, str] = {
    "amd64": "x64",
    "x64": "x64",
    "x86_64": "x64",
    "arm64": "arm64",
    "aarch64": "arm64",
    "s390x": "s390x",
    "ppc64le": "ppc64le",
    "ppc64el": "ppc64le",
    "armhf": "arm",
    "arm": "arm",
    "armv7l": "arm",
}
# Architectures whose runner actions/runner does not publish (a fork such as
# canonical/github-actions-runner does), and the oldest base of the armhf (32-bit) images.
UPSTREAM_RUNNER_REPO = "actions/runner"
NOT_UPSTREAM_ARCHES = frozenset({"s390x", "ppc64le"})
ARMHF_OLDEST_BASE = "24.04"
BASES: dict[str, str] = {
    "focal": "focal",
    "20.04": "focal",
    "jammy": "jammy",
    "22.04": "jammy",
    "noble": "noble",
    "24.04": "noble",
    "resolute": "resolute",
    "26.04": "resolute",
}
BUILD_INTERVAL_RANGE = (1, 24)
REVISION_HISTORY_RANGE = (2, 99)
_RUNNER_VERSION = re.compile(r"^v?(\d+\.\d+\.\d+)$")
_RUNNER_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9_.-]{1,100}$")
_SERIAL = re.compile(r"^[0-9]{8}(?:\.[0-9]{1,3})?$")
# Juju secret keys are lowercase letters, digits and dashes; env names must be shell-safe.
_SECRET_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")

# Environment names the build script or its shell depends on; the CLI refuses them as secrets
# (app/.../userdata.py), so the charm says so before a build instead of failing one.
RESERVED_SECRET_NAMES = frozenset(
    {"PATH", "HOME", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "PS4", "CDPATH"}
)
RESERVED_SECRET_PREFIXES = ("GRIB_", "BASH_")

ConfigValue = bool | int | float | str
SecretReader = Callable[[str], dict[str, str]]


class InvalidConfigError(Exception):
    """A config option (or the secret it names) holds a value the charm cannot use."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")
        self.option = option
        self.problem = problem


class ConfigValidationError(Exception):
    """Every invalid option at once, so the operator can fix them in one go."""

    def __init__(self, errors: list[InvalidConfigError]) -> None:
        self.errors = errors
        first = str(errors[0])
        rest = [e.option for e in errors[1:]]
        super().__init__(f"{first} (also check: {', '.join(rest)})" if rest else first)


class BuildCloud(pydantic.BaseModel):
    """The OpenStack project the builder VMs run in (password kept out of any repr)."""

    model_config = pydantic.ConfigDict(frozen=True)

    auth_url: str
    password: pydantic.SecretStr
    project_domain_name: str
    project_name: str
    user_domain_name: str
    username: str


class BuildConfig(pydantic.BaseModel):
    """Everything the charm's options say, validated and in the CLI's words."""

    model_config = pydantic.ConfigDict(frozen=True)

    arch: str  # GitHub's word: x64 / arm64 / s390x / ppc64le / arm
    bases: tuple[str, ...]  # codenames, in the operator's order; the first is published as `id`
    # codename -> the Ubuntu cloud image serial it is pinned to (base-image noble@20260715)
    base_serials: dict[str, str] = {}
    runner_binary_repo: str = UPSTREAM_RUNNER_REPO
    build_interval: int
    flavor: str
    network: str
    revision_history_limit: int
    runner_version: str  # "" means the latest release
    script_url: str
    verify_script_url: str = ""
    verify_images: bool = True  # False: images are copied and published unverified
    # Environment variable name (without the CLI's prefix) -> value; never logged.
    script_secrets: dict[str, pydantic.SecretStr]
    build_cloud: BuildCloud

    def base_words(self) -> list[str]:
        """Return the bases as the CLI's --base takes them: codename, or codename@serial."""
        return [
            f"{base}@{self.base_serials[base]}" if base in self.base_serials else base
            for base in self.bases
        ]

    def fingerprint(self) -> str:
        """Return a digest of every setting that changes what an image contains.

        The interval, history limit, flavor and network only change how or when a build runs,
        so changing them does not trigger a rebuild.
        """
        secrets = {k: v.get_secret_value() for k, v in sorted(self.script_secrets.items())}
        facts = {
            "arch": self.arch,
            "bases": self.base_words(),
            "runner_binary_repo": self.runner_binary_repo,
            "runner_version": self.runner_version,
            "script_url": self.script_url,
            "script_secrets": hashlib.sha256(json.dumps(secrets).encode()).hexdigest(),
            "cloud": [
                self.build_cloud.auth_url,
                self.build_cloud.project_domain_name,
                self.build_cloud.project_name,
                self.build_cloud.user_domain_name,
                self.build_cloud.username,
            ],
        }
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def _text(config: Mapping[str, ConfigValue], option: str) -> str:
    value = config.get(option, "")
    return str(value).strip() if value is not None else ""


def _required(config: Mapping[str, ConfigValue], option: str, example: str) -> str:
    value = _text(config, option)
    if not value:
        raise InvalidConfigError(option, f"is empty; set it, e.g. {example}")
    return value


def _int_in_range(
    config: Mapping[str, ConfigValue], option: str, bounds: tuple[int, int], unit: str
) -> int:
    raw = config.get(option)
    low, high = bounds
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise InvalidConfigError(
            option, f"{raw!r} is out of range; set {unit} from {low} to {high}"
        )
    return raw


def _arch(config: Mapping[str, ConfigValue]) -> str:
    word = _text(config, "architecture").lower()
    if word not in ARCHITECTURES:
        raise InvalidConfigError(
            "architecture",
            f"{word!r} is not supported; use amd64, arm64, s390x, ppc64le or armhf",
        )
    return ARCHITECTURES[word]


def _base_pins(config: Mapping[str, ConfigValue]) -> dict[str, str]:
    """Return codename -> serial of the bases pinned with @serial, in the operator's order."""
    words = [w.strip().lower() for w in _text(config, "base-image").split(",") if w.strip()]
    if not words:
        raise InvalidConfigError("base-image", "is empty; set one or more releases, e.g. noble")
    pins: dict[str, str] = {}
    for word in words:
        name, pinned, serial = word.partition("@")
        if name not in BASES:
            known = ", ".join(k for k in BASES if not k[0].isdigit())
            raise InvalidConfigError(
                "base-image",
                f"unknown Ubuntu release {name!r}; use a codename or version of {known}",
            )
        if pinned and not _SERIAL.match(serial):
            raise InvalidConfigError(
                "base-image",
                f"{word!r}: {serial!r} is not a cloud image serial; pin one as it is named "
                "under cloud-images.ubuntu.com/<codename>/, e.g. noble@20260715",
            )
        codename = BASES[name]
        if codename in pins and pins[codename] != serial:
            raise InvalidConfigError(
                "base-image", f"{codename} is given twice with different serials; give it once"
            )
        pins[codename] = serial
    return pins


def _runner_binary_repo(config: Mapping[str, ConfigValue]) -> str:
    repo = _text(config, "runner-binary-repo") or UPSTREAM_RUNNER_REPO
    if not _RUNNER_REPO.match(repo) or ".." in repo:
        raise InvalidConfigError(
            "runner-binary-repo",
            f"{repo!r} is not a GitHub repository; use owner/name, e.g. "
            "canonical/github-actions-runner",
        )
    return repo


def _check_arch_fits(values: Mapping[str, object]) -> None:
    """Raise when the architecture cannot be built from the runner repository or the bases."""
    arch, repo, bases = values.get("arch"), values.get("runner_binary_repo"), values.get("bases")
    if arch in NOT_UPSTREAM_ARCHES and str(repo).lower() == UPSTREAM_RUNNER_REPO:
        raise InvalidConfigError(
            "runner-binary-repo",
            f"{UPSTREAM_RUNNER_REPO} publishes no {arch} runner; set runner-binary-repo to a "
            "repository that does, e.g. canonical/github-actions-runner",
        )
    if arch == "arm" and isinstance(bases, tuple):
        versions = {v: k for k, v in BASES.items() if k[0].isdigit()}
        older = [b for b in bases if versions[b] < ARMHF_OLDEST_BASE]
        if older:
            raise InvalidConfigError(
                "base-image",
                f"armhf images need noble (24.04) or later, and {', '.join(older)} is older; "
                "remove it or choose another architecture",
            )


def _runner_version(config: Mapping[str, ConfigValue]) -> str:
    word = _text(config, "runner-version")
    if not word:
        return ""
    match = _RUNNER_VERSION.match(word)
    if not match:
        raise InvalidConfigError(
            "runner-version", f"{word!r} is not a release number; use e.g. 2.321.0, or empty"
        )
    return match.group(1)


def _url(option: str, value: str, schemes: tuple[str, ...]) -> str:
    parsed = urllib.parse.urlparse(value)
    if parsed.scheme not in schemes or not parsed.hostname:
        wanted = " or ".join(f"{s}://" for s in schemes)
        raise InvalidConfigError(option, f"{value!r} is not a URL starting with {wanted}")
    return value


def _script_url(config: Mapping[str, ConfigValue], option: str = "script-url") -> str:
    """Return a script URL option (script-url, verify-script-url): https, or empty for none."""
    url = _text(config, option)
    return _url(option, url, ("https",)) if url else ""


def _flag(config: Mapping[str, ConfigValue], option: str, default: bool) -> bool:
    value = config.get(option, default)
    if not isinstance(value, bool):
        raise InvalidConfigError(option, f"{value!r} is not true or false")
    return value


def _secret(config: Mapping[str, ConfigValue], option: str, read: SecretReader) -> dict[str, str]:
    secret_id = _text(config, option)
    try:
        return read(secret_id)
    except ops.SecretNotFoundError:
        raise InvalidConfigError(
            option, f"secret {secret_id} not found; check the ID given by juju add-secret"
        ) from None
    except ops.ModelError:
        # Juju answers "permission denied" when the secret exists but was not granted.
        raise InvalidConfigError(
            option, f"cannot read secret {secret_id}; run juju grant-secret for this app"
        ) from None


def _script_secrets(
    config: Mapping[str, ConfigValue], read: SecretReader
) -> dict[str, pydantic.SecretStr]:
    if not _text(config, "script-secret-id"):
        return {}
    content = _secret(config, "script-secret-id", read)
    env: dict[str, pydantic.SecretStr] = {}
    for key, value in content.items():
        if not _SECRET_KEY.match(key):
            raise InvalidConfigError(
                "script-secret-id", f"key {key!r} cannot be an environment variable name"
            )
        name = key.upper().replace("-", "_")
        if name in RESERVED_SECRET_NAMES or name.startswith(RESERVED_SECRET_PREFIXES):
            raise InvalidConfigError(
                "script-secret-id",
                f"key {key!r} becomes {name}, which the build reserves; rename it",
            )
        env[name] = pydantic.SecretStr(value)
    return env


def _build_cloud(config: Mapping[str, ConfigValue], read: SecretReader) -> BuildCloud:
    errors: list[InvalidConfigError] = []

    def collect(fn: Callable[[], str]) -> str:
        try:
            return fn()
        except InvalidConfigError as error:
            errors.append(error)
            return ""

    auth_url = collect(
        lambda: _url(
            "openstack-auth-url",
            _required(config, "openstack-auth-url", "https://keystone.example:5000/v3"),
            ("https", "http"),
        )
    )
    secret_id = collect(
        lambda: _required(config, "openstack-password-secret", "secret:<id from juju add-secret>")
    )

    def password() -> str:
        value = _secret(config, "openstack-password-secret", read).get("password", "")
        if not value:
            raise InvalidConfigError(
                "openstack-password-secret", "secret has no `password` key; add it"
            )
        return value

    secret = collect(password) if secret_id else ""
    names = {
        option: collect(functools.partial(_required, config, option, example))
        for option, example in (
            ("openstack-project-domain-name", "Default"),
            ("openstack-project-name", "image-builder"),
            ("openstack-user-domain-name", "Default"),
            ("openstack-user-name", "image-builder"),
        )
    }
    if errors:
        raise ConfigValidationError(errors)
    return BuildCloud(
        auth_url=auth_url,
        password=pydantic.SecretStr(secret),
        project_domain_name=names["openstack-project-domain-name"],
        project_name=names["openstack-project-name"],
        user_domain_name=names["openstack-user-domain-name"],
        username=names["openstack-user-name"],
    )


def load_config(config: Mapping[str, ConfigValue], read_secret: SecretReader) -> BuildConfig:
    """Return the validated config, or raise ConfigValidationError listing every bad option."""
    errors: list[InvalidConfigError] = []
    values: dict[str, object] = {}
    parsers: list[tuple[str, Callable[[], object]]] = [
        ("arch", lambda: _arch(config)),
        ("base_pins", lambda: _base_pins(config)),
        ("runner_binary_repo", lambda: _runner_binary_repo(config)),
        (
            "build_interval",
            lambda: _int_in_range(config, "build-interval", BUILD_INTERVAL_RANGE, "hours"),
        ),
        (
            "revision_history_limit",
            lambda: _int_in_range(
                config, "revision-history-limit", REVISION_HISTORY_RANGE, "a count"
            ),
        ),
        ("runner_version", lambda: _runner_version(config)),
        ("script_url", lambda: _script_url(config)),
        ("verify_script_url", lambda: _script_url(config, "verify-script-url")),
        ("verify_images", lambda: _flag(config, "verify-images", default=True)),
        ("script_secrets", lambda: _script_secrets(config, read_secret)),
        ("build_cloud", lambda: _build_cloud(config, read_secret)),
    ]
    for field, parse in parsers:
        try:
            values[field] = parse()
        except InvalidConfigError as error:
            errors.append(error)
        except ConfigValidationError as many:
            errors.extend(many.errors)
    pins = values.pop("base_pins", None)
    if isinstance(pins, dict):
        values["bases"] = tuple(pins)
        values["base_serials"] = {codename: serial for codename, serial in pins.items() if serial}
    try:
        _check_arch_fits(values)
    except InvalidConfigError as error:
        errors.append(error)
    if errors:
        raise ConfigValidationError(errors)
    values["flavor"] = _text(config, "build-flavor")
    values["network"] = _text(config, "build-network")
    return BuildConfig.model_validate(values)
