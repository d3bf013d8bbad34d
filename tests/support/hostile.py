"""The hostile and edge values every test tier draws from: one corpus, shared.

The CLI's tests run them through its checks and the rendered scripts; the charm's tests through
its options, relation data and the contract-agreement test (charm and CLI must agree). Add a new
kind here rather than a list in a test.
"""

from github_runner_image_builder.guest import marker


def hostile_values(nonce: str) -> list[str]:
    """Values that would break out of a badly quoted shell string (secrets, URLs, names)."""
    return [
        "'; echo pwned; '",
        '"; echo pwned; "',
        "$(echo pwned)",
        "`echo pwned`",
        "${HOME}$PATH\\",
        "a\\'b",
        "line one\nline two\n  echo pwned\n",
        "GRIB_NONCE=ffffffffffffffff",
        marker.success_line(nonce),
        "%s%n%x",
        "-- --help",
        "%s%n%x -- --help",
        " spaced ",
        "",
        "ünïcödé ✓",
        "\\",
        "'",
        # Values that read as options if they travel as their own argv word.
        "--help",
        "-x",
        "--base=jammy",
        "-",
        "--",
    ]


# Edge values per kind of option, on top of hostile_values: the charm and the CLI must give each
# the same verdict (tests/unit/test_contract_agreement.py). NUL bytes are here, not above: no
# shell, argv or environment can carry one.
EDGE_VALUES: dict[str, list[str]] = {
    "architecture": [
        "amd64",
        "AMD64",
        " x64 ",
        "x86_64",
        "arm64",
        "aarch64",
        "s390x",
        "ppc64el",
        "sparc",
        "amd64,arm64",
        "amd64\0",
    ],
    "base-image": [
        "noble",
        "22.04, noble,jammy",
        "JAMMY",
        "noble,,",
        "noble,xenial",
        "18.04",
        ",",
        "focal",
        "26.04",
        "noble\0",
    ],
    "runner-version": [
        "2.321.0",
        "v2.321.0",
        " 2.321.0 ",
        "2.321",
        "latest",
        "2.321.0.1",
        "\u0662.\u0663\u0662\u0661.\u0660",
        "2.321.0\n",
        "V2.321.0",
        "2.321.0\0",
    ],
    "script-url": [
        "https://example.com/s.sh",
        "https://user:pw@example.com/s.sh",
        "https://example.com/my script.sh",
        "http://example.com/s.sh",
        "example.com/s.sh",
        "https://[::1/s.sh",
        "https://",
        "ftp://example.com/s",
        "https://example.com/s.sh?token=a&b=c",
        "https://exa\tmple.com/s.sh",
        "https://example.com/\u00e9.sh",
        "https://example.com/s.sh\0",
    ],
    "name": [
        "small",
        "m1.large",
        "--help",
        "-x",
        "--flavor=other",
        "a b",
        "ünï",
        "x" * 300,
        "net\0",
    ],
    "proxy": [
        "squid.internal:3128",
        "http://squid.internal:3128",
        "https://squid.internal:3128",
        "http://user:pw@squid.internal:3128",
        "http://squid.internal:3128/path",
        "socks5://squid.internal:1080",
        "squid.internal",
        "squid.internal:0",
        "squid.internal:99999",
        "[::1]:3128",
        "http://[::1]:3128",
        "[zz::1]:3128",
        "squid internal:3128",
        "http://",
        "http://squid.internal:3128\0",
    ],
    "secret-key": [
        "api-token",
        "API_TOKEN",
        "_x",
        "9lives",
        "path",
        "bash-env",
        "grib-x",
        "a.b",
        "token\0",
        "ünï",
        "a" * 200,
    ],
    "secret-value": ["x" * 1000, "with\nnewline", "nul\0byte"],
}


def hostile_credentials(nonce: str) -> list[str]:
    """Values a requirer may write into any credential key: each is refused or inert data."""
    return [
        *hostile_values(nonce),
        "x" * 140_000,  # once E2BIG from Popen in every hook that started a build
        "nul\0byte",
        "u,builder",  # once split --upload-clouds and made the build cloud a target
        "-evil",
        "--os-cloud=builder",
        "a\r\nb",
        "\x1b[2Jclear",
        "build 1 finished: exit 0\n",  # a forged log line
        "ü" * 256,
    ]


def hostile_proxy_passwords() -> list[str]:
    """Proxy passwords a URL may carry as they are (RFC 3986 sub-delims) that a shell would run."""
    return [
        "'$(touch$IFS'pwned')'",
        "$(touch$IFS'pwned')",
        "';touch$IFS'pwned';'",
        "%24(touch%20pwned)",
        "a&b;c=d!e*f+g,h(i)j",
        "GRIB_NONCE=ffffffffffffffff",
    ]


def hostile_runner_repos(nonce: str) -> list[str]:
    """Runner binary repositories that must be refused: every hostile value, and a few more."""
    return [
        *hostile_values(nonce),
        "../../etc",
        "actions/../runner",
        "actions/runner/releases",
        "owner/name?x=1",
        "owner/name#x",
        "-owner/name",
        "owner/$(reboot)",
        "https://github.com/actions/runner",
    ]
