"""Tests of the base and architecture vocabularies."""

import pytest

from github_runner_image_builder import platforms


@pytest.mark.parametrize("word", ["x64", "amd64", "x86_64", "AMD64", " x64 "])
def test_every_word_for_amd64(word: str) -> None:
    arch = platforms.parse_arch(word)
    assert (arch.ubuntu, arch.glance, arch.github) == ("amd64", "x86_64", "x64")


@pytest.mark.parametrize("word", ["arm64", "aarch64"])
def test_every_word_for_arm64(word: str) -> None:
    assert platforms.parse_arch(word).glance == "aarch64"


def test_unknown_arch_names_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown architecture 'sparc'.*x64/amd64"):
        platforms.parse_arch("sparc")


@pytest.mark.parametrize(("word", "codename"), [("noble", "noble"), ("22.04", "jammy")])
def test_base_by_codename_or_version(word: str, codename: str) -> None:
    assert platforms.parse_base(word).codename == codename


def test_unknown_base_names_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown Ubuntu base 'bionic'.*noble/24.04"):
        platforms.parse_base("bionic")


def test_names() -> None:
    noble, x64 = platforms.parse_base("noble"), platforms.parse_arch("x64")
    assert platforms.image_name("p", noble, x64) == "p-noble-x64"
    assert platforms.base_image_name("p", noble, x64) == "p-base-noble-amd64"
