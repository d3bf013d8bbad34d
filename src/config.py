"""Charm config and Juju secrets turned into a typed, validated BuildConfig.

ConfigReader reads them once per hook. Nothing here touches the machine or the cloud. A bad or
missing value raises InvalidConfigError naming the option and what is expected, which the charm
shows as BlockedStatus. Every value the CLI receives is checked with the CLI's own rules
(image_builder_contract), so whatever the charm accepts, the CLI accepts too.
"""

import functools
import hashlib
import hmac
import json
import logging
import urllib.parse
from collections.abc import Callable, Mapping

import ops
import pydantic

from image_builder_contract import cli_args, names, platforms, rules

logger = logging.getLogger(__name__)

BUILD_INTERVAL_RANGE = (1, 24)
REVISION_HISTORY_RANGE = (2, 99)
# Juju's model proxy reaches the charm in these variables, each set by one model-config key; the
# CLI's own process (its OpenStack API calls) gets them as the usual proxy variables.
PROXY_SETTINGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "JUJU_CHARM_HTTP_PROXY": ("juju-http-proxy", ("http_proxy", "HTTP_PROXY")),
    "JUJU_CHARM_HTTPS_PROXY": ("juju-https-proxy", ("https_proxy", "HTTPS_PROXY")),
    "JUJU_CHARM_NO_PROXY": ("juju-no-proxy", ("no_proxy", "NO_PROXY")),
}

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


class ProxyConfig(pydantic.BaseModel):
    """Juju's model proxy (model config juju-http-proxy, juju-https-proxy, juju-no-proxy)."""

    model_config = pydantic.ConfigDict(frozen=True)

    # The environment variable each value came from -> its value; unset ones are left out.
    settings: dict[str, str] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "ProxyConfig":
        """Return the model's proxy as the charm's environment gives it."""
        return cls(settings={name: environ[name] for name in PROXY_SETTINGS if environ.get(name)})

    def environment(self) -> dict[str, str]:
        """Return the usual proxy variables, for the CLI's own process (its API calls)."""
        env: dict[str, str] = {}
        for name, value in self.settings.items():
            env.update(dict.fromkeys(PROXY_SETTINGS[name][1], value))
        return env

    def for_image(self) -> str:
        """Return the proxy the builder VM uses (http, else https), "" for none.

        Raises InvalidConfigError naming the model-config key when the CLI would refuse it.
        """
        for name in ("JUJU_CHARM_HTTP_PROXY", "JUJU_CHARM_HTTPS_PROXY"):
            if value := self.settings.get(name, "").strip():
                key = PROXY_SETTINGS[name][0]
                try:
                    return rules.normalize_proxy(value)
                except ValueError as exc:
                    raise InvalidConfigError(
                        key,
                        f"{exc} (a build cannot use it); change the model config: "
                        f"juju model-config {key}=http://<host>:<port>",
                    ) from None
        return ""


class BuildConfig(pydantic.BaseModel):
    """Everything the charm's options say, validated and in the CLI's words."""

    model_config = pydantic.ConfigDict(frozen=True)

    arch: str  # GitHub's word: x64 / arm64 / s390x / ppc64le / arm
    bases: tuple[str, ...]  # codenames, in the operator's order; the first is published as `id`
    # codename -> the Ubuntu cloud image serial it is pinned to (base-image noble@20260715)
    base_serials: dict[str, str] = {}
    runner_binary_repo: str = platforms.UPSTREAM_RUNNER_REPO
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
    prefix: str  # of every image and builder name: the application's name
    # The proxy the builder VM uses during the build (it may carry credentials); "" for none.
    image_proxy: pydantic.SecretStr = pydantic.SecretStr("")

    def base_words(self) -> list[str]:
        """Return the bases as the CLI's --base takes them: codename, or codename@serial."""
        return [
            f"{base}@{self.base_serials[base]}" if base in self.base_serials else base
            for base in self.bases
        ]

    def _image_facts(self) -> dict[str, object]:
        """Return every setting that changes what an image contains, secrets left out.

        The interval, history limit, flavor and network only change how or when a build runs,
        so changing them does not trigger a rebuild.
        """
        return {
            "arch": self.arch,
            "bases": self.base_words(),
            "runner_binary_repo": self.runner_binary_repo,
            "runner_version": self.runner_version,
            "script_url": self.script_url,
            "cloud": [
                self.build_cloud.auth_url,
                self.build_cloud.project_domain_name,
                self.build_cloud.project_name,
                self.build_cloud.user_domain_name,
                self.build_cloud.username,
            ],
        }

    def fingerprint(self, key: bytes) -> str:
        """Return an HMAC-SHA256, under the application's fingerprint key, of the image settings.

        It is kept on the disk and in peer data; without the key (a Juju secret of the
        application, never on the disk) nobody can test a guess of a script secret against it.
        """
        secrets = {k: v.get_secret_value() for k, v in sorted(self.script_secrets.items())}
        facts = {**self._image_facts(), "script_secrets": secrets}
        message = json.dumps(facts, sort_keys=True).encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def legacy_fingerprint(self) -> str:
        """Return the unkeyed digest of earlier revisions, only to recognise it on upgrade."""
        secrets = {k: v.get_secret_value() for k, v in sorted(self.script_secrets.items())}
        facts = {
            **self._image_facts(),
            "script_secrets": hashlib.sha256(json.dumps(secrets).encode()).hexdigest(),
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
    word = _text(config, "architecture")
    try:
        arch = platforms.parse_arch(word)
    except ValueError:
        known = ", ".join(a.ubuntu for a in platforms.ARCHES)
        raise InvalidConfigError(
            "architecture", f"{word!r} is not supported; use {known}"
        ) from None
    return arch.github


def _base_pins(config: Mapping[str, ConfigValue]) -> dict[str, str]:
    """Return codename -> serial of the bases pinned with @serial, in the operator's order."""
    words = rules.split_list(_text(config, "base-image"))
    if not words:
        raise InvalidConfigError("base-image", "is empty; set one or more releases, e.g. noble")
    pins: dict[str, str] = {}
    for word in words:
        name, _, serial = word.strip().lower().partition("@")
        try:
            release = platforms.parse_base(name)
            platforms.check_runner_base(release)
        except ValueError:
            raise InvalidConfigError(
                "base-image",
                f"unknown Ubuntu release {name!r}; use a codename or version of "
                f"{', '.join(platforms.RUNNER_BASES)}",
            ) from None
        try:
            platforms.parse_base(word)
        except ValueError:
            raise InvalidConfigError(
                "base-image",
                f"{word!r}: {serial!r} is not a cloud image serial; pin one as it is named "
                "under cloud-images.ubuntu.com/<codename>/, e.g. noble@20260715",
            ) from None
        codename = release.codename
        if codename in pins and pins[codename] != serial:
            raise InvalidConfigError(
                "base-image", f"{codename} is given twice with different serials; give it once"
            )
        pins[codename] = serial
    return pins


def _runner_binary_repo(config: Mapping[str, ConfigValue]) -> str:
    repo = _text(config, "runner-binary-repo") or platforms.UPSTREAM_RUNNER_REPO
    try:
        # The format alone here; whether it serves the architecture is _check_arch_fits's.
        platforms.check_runner_repo(repo, platforms.parse_arch("x64"))
    except ValueError:
        raise InvalidConfigError(
            "runner-binary-repo",
            f"{repo!r} is not a GitHub repository; use owner/name, e.g. "
            "canonical/github-actions-runner",
        ) from None
    return repo


def _check_user_data_fits(values: Mapping[str, object]) -> None:
    """Raise when the script secrets, script URL and proxy leave the builder no user-data room.

    The CLI refuses such a build (the same rule), so the unit blocks instead of failing every
    build while Active.
    """
    secrets, url, proxy = (values.get(f) for f in ("script_secrets", "script_url", "image_proxy"))
    if not (isinstance(secrets, dict) and isinstance(url, str)):
        return  # already reported
    problem = rules.user_data_room_problem(
        {name: value.get_secret_value() for name, value in secrets.items()},
        url,
        proxy.get_secret_value() if isinstance(proxy, pydantic.SecretStr) else "",
    )
    if problem:
        raise InvalidConfigError("script-secret-id", problem)


def _check_arch_fits(values: Mapping[str, object]) -> None:
    """Raise when the architecture cannot be built from the runner repository or the bases."""
    arch_word, repo = values.get("arch"), values.get("runner_binary_repo")
    bases = values.get("bases")
    if not isinstance(arch_word, str) or not isinstance(repo, str):
        return  # already reported
    arch = platforms.parse_arch(arch_word)
    try:
        platforms.check_runner_repo(repo, arch)
    except ValueError:
        raise InvalidConfigError(
            "runner-binary-repo",
            f"{platforms.UPSTREAM_RUNNER_REPO} publishes no {arch.github} runner; set "
            "runner-binary-repo to a repository that does, e.g. canonical/github-actions-runner",
        ) from None
    if isinstance(bases, tuple):
        older = []
        for codename in bases:
            try:
                platforms.check_pair(platforms.parse_base(codename), arch)
            except ValueError:
                older.append(codename)
        if older:
            oldest = next(b for b in platforms.BASES if b.version == arch.oldest_base)
            raise InvalidConfigError(
                "base-image",
                f"{arch.ubuntu} images need {oldest.codename} ({oldest.version}) or later, and "
                f"{', '.join(older)} is older; remove it or choose another architecture",
            )


def _runner_version(config: Mapping[str, ConfigValue]) -> str:
    word = _text(config, "runner-version")
    if not word:
        return ""
    try:
        return rules.normalize_runner_version(word)
    except ValueError:
        raise InvalidConfigError(
            "runner-version", f"{word!r} is not a release number; use e.g. 2.321.0, or empty"
        ) from None


def _url(option: str, value: str, schemes: tuple[str, ...]) -> str:
    parsed = urllib.parse.urlparse(value)
    if parsed.scheme not in schemes or not parsed.hostname:
        wanted = " or ".join(f"{s}://" for s in schemes)
        raise InvalidConfigError(option, f"{value!r} is not a URL starting with {wanted}")
    return value


def _script_url(config: Mapping[str, ConfigValue], option: str = "script-url") -> str:
    """Return a script URL option (script-url, verify-script-url): https, or empty for none."""
    url = _text(config, option)
    if not url:
        return ""
    try:
        rules.check_script_url(url)
    except ValueError as exc:
        raise InvalidConfigError(option, str(exc)) from None
    return url


def _flag(config: Mapping[str, ConfigValue], option: str, default: bool) -> bool:
    value = config.get(option, default)
    if not isinstance(value, bool):
        raise InvalidConfigError(option, f"{value!r} is not true or false")
    return value


def _argv_text(config: Mapping[str, ConfigValue], option: str) -> str:
    """Return a free-text option the CLI takes as it is (flavor, network names)."""
    value = _text(config, option)
    try:
        cli_args.check_value(value)
    except ValueError as exc:
        raise InvalidConfigError(option, str(exc)) from None
    return value


def _prefix(app_name: str) -> str:
    try:
        names.check_prefix(app_name)
    except ValueError as exc:
        raise InvalidConfigError(
            "application name", f"{exc}; deploy the charm under such a name"
        ) from None
    return app_name


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
    try:
        env = rules.secret_environment(content)
    except rules.SecretKeyError as exc:
        raise InvalidConfigError("script-secret-id", str(exc)) from None
    return {name: pydantic.SecretStr(value) for name, value in env.items()}


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


def load_config(
    config: Mapping[str, ConfigValue],
    read_secret: SecretReader,
    proxy: ProxyConfig,
    app_name: str,
) -> BuildConfig:
    """Return the validated config, or raise ConfigValidationError listing every bad option.

    The model's proxy and the application's name become CLI options too, so they are checked
    here with the options.
    """
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
        ("flavor", lambda: _argv_text(config, "build-flavor")),
        ("network", lambda: _argv_text(config, "build-network")),
        ("verify_script_url", lambda: _script_url(config, "verify-script-url")),
        ("verify_images", lambda: _flag(config, "verify-images", default=True)),
        ("script_secrets", lambda: _script_secrets(config, read_secret)),
        ("build_cloud", lambda: _build_cloud(config, read_secret)),
        ("image_proxy", proxy.for_image),
        ("prefix", lambda: _prefix(app_name)),
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
    for check in (_check_arch_fits, _check_user_data_fits):
        try:
            check(values)
        except InvalidConfigError as error:
            errors.append(error)
    if errors:
        raise ConfigValidationError(errors)
    return BuildConfig.model_validate(values)


class ConfigReader:
    """The charm's options, read and validated once per hook (they cannot change within one)."""

    def __init__(self, model: ops.Model, proxy: ProxyConfig) -> None:
        self._model = model
        self._proxy = proxy
        self._loaded: BuildConfig | ConfigValidationError | None = None

    def _read_secret(self, secret_id: str) -> dict[str, str]:
        # refresh=True: always build with the newest revision the operator published.
        return self._model.get_secret(id=secret_id).get_content(refresh=True)

    def read(self) -> BuildConfig | None:
        """Return the validated config, None when an option is bad (`problem` says which)."""
        if self._loaded is None:
            try:
                self._loaded = load_config(
                    self._model.config, self._read_secret, self._proxy, self._model.app.name
                )
            except ConfigValidationError as errors:
                self._loaded = errors
                logger.warning("invalid configuration: %s", "; ".join(map(str, errors.errors)))
        return self._loaded if isinstance(self._loaded, BuildConfig) else None

    @property
    def problem(self) -> str | None:
        """Return what is wrong with the options (read first), None when nothing is."""
        return str(self._loaded) if isinstance(self._loaded, ConfigValidationError) else None

    def build_interval(self) -> int | None:
        """Return the build-interval option, None while the config is invalid."""
        config = self.read()
        return config.build_interval if config is not None else None
