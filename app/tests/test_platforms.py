"""Tests of the base and architecture vocabularies."""

import pytest

from image_builder_contract import names, platforms
from tests.support.hostile import hostile_runner_repos


@pytest.mark.parametrize("word", ["x64", "amd64", "x86_64", "AMD64", " x64 "])
def test_every_word_for_amd64(word: str) -> None:
    arch = platforms.parse_arch(word)
    assert (arch.ubuntu, arch.glance, arch.github) == ("amd64", "x86_64", "x64")


@pytest.mark.parametrize("word", ["arm64", "aarch64"])
def test_every_word_for_arm64(word: str) -> None:
    assert platforms.parse_arch(word).glance == "aarch64"


def test_unknown_arch_names_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown architecture 'sparc'.*amd64/x64/x86_64"):
        platforms.parse_arch("sparc")


@pytest.mark.parametrize(("word", "codename"), [("noble", "noble"), ("22.04", "jammy")])
def test_base_by_codename_or_version(word: str, codename: str) -> None:
    assert platforms.parse_base(word).codename == codename


def test_unknown_base_names_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown Ubuntu base 'bionic'.*noble/24.04"):
        platforms.parse_base("bionic")


def test_names() -> None:
    noble, x64 = platforms.parse_base("noble"), platforms.parse_arch("x64")
    assert names.image_name("p", noble, x64) == "p-noble-x64"
    assert names.base_image_name("p", noble, x64) == "p-base-noble-amd64"


@pytest.mark.parametrize(
    ("word", "ubuntu", "glance", "github", "vm"),
    [
        ("s390x", "s390x", "s390x", "s390x", "s390x"),
        ("ppc64le", "ppc64el", "ppc64le", "ppc64le", "ppc64el"),
        ("ppc64el", "ppc64el", "ppc64le", "ppc64le", "ppc64el"),
        ("armhf", "armhf", "aarch64", "arm", "arm64"),
        ("arm", "armhf", "aarch64", "arm", "arm64"),
        ("armv7l", "armhf", "aarch64", "arm", "arm64"),
        ("aarch64", "arm64", "aarch64", "arm64", "arm64"),
    ],
)
def test_every_word_operators_use(
    word: str, ubuntu: str, glance: str, github: str, vm: str
) -> None:
    arch = platforms.parse_arch(word)
    assert (arch.ubuntu, arch.glance, arch.github, arch.vm_ubuntu) == (ubuntu, glance, github, vm)


def test_armhf_boots_the_arm64_cloud_image_and_names_its_own_images() -> None:
    noble, armhf = platforms.parse_base("noble"), platforms.parse_arch("armhf")
    assert names.image_name("p", noble, armhf) == "p-noble-arm"
    assert names.base_image_name("p", noble, armhf) == "p-base-noble-arm64"


@pytest.mark.parametrize(
    ("base", "ok"), [("focal", False), ("jammy", False), ("noble", True), ("resolute", True)]
)
def test_armhf_needs_noble_or_later(base: str, ok: bool) -> None:
    pair = (platforms.parse_base(base), platforms.parse_arch("armhf"))
    if ok:
        platforms.check_pair(*pair)
    else:
        with pytest.raises(ValueError, match=r"armhf images need Ubuntu noble \(24.04\) or later"):
            platforms.check_pair(*pair)


def test_a_base_pinned_to_a_serial() -> None:
    pinned = platforms.parse_base("noble@20260715")
    assert (pinned.codename, pinned.serial) == ("noble", "20260715")
    assert platforms.parse_base("24.04@20260715.1").serial == "20260715.1"
    assert names.image_name("p", pinned, platforms.parse_arch("x64")) == "p-noble-x64"
    assert (
        names.base_image_name("p", pinned, platforms.parse_arch("x64"))
        == "p-base-noble-20260715-amd64"
    )


@pytest.mark.parametrize(
    "word", ["noble@", "noble@latest", "noble@2026-07-15", "noble@../x", "noble@1"]
)
def test_a_bad_serial_is_refused_naming_it(word: str) -> None:
    with pytest.raises(ValueError, match="invalid cloud image serial"):
        platforms.parse_base(word)


def test_runner_repo() -> None:
    x64, s390x = platforms.parse_arch("x64"), platforms.parse_arch("s390x")
    assert platforms.check_runner_repo("actions/runner", x64) == "actions/runner"
    assert platforms.check_runner_repo("canonical/github-actions-runner", s390x)
    with pytest.raises(ValueError, match="actions/runner publishes no s390x runner"):
        platforms.check_runner_repo("actions/runner", s390x)
    for arch in ("x64", "arm64", "armhf"):
        platforms.check_runner_repo("actions/runner", platforms.parse_arch(arch))


@pytest.mark.parametrize("repo", hostile_runner_repos("0123456789abcdef"))
def test_hostile_runner_repos_are_refused(repo: str) -> None:
    with pytest.raises(ValueError, match="invalid runner binary repository"):
        platforms.check_runner_repo(repo, platforms.parse_arch("x64"))
