"""Tests of choosing the builder's flavor and network."""

import pytest

from github_runner_image_builder.cloud.placement import (
    ChoiceError,
    Flavor,
    Network,
    choose_flavor,
    choose_network,
)

FLAVORS = [
    Flavor("1", "m1.tiny", 1, 512, 1),
    Flavor("2", "m1.large", 4, 8192, 80),
    Flavor("3", "m1.medium", 2, 4096, 40),
    Flavor("4", "m1.small", 2, 2048, 20),
    Flavor("5", "lowram", 2, 512, 40),
]


def test_smallest_big_enough_flavor() -> None:
    assert choose_flavor(FLAVORS, None).name == "m1.small"


@pytest.mark.parametrize("wanted", ["m1.large", "2"])
def test_wanted_flavor_by_name_or_id(wanted: str) -> None:
    assert choose_flavor(FLAVORS, wanted).id == "2"


def test_unknown_flavor_names_the_choices() -> None:
    with pytest.raises(ChoiceError, match=r"flavor 'xl' not found; flavors visible: lowram, m1"):
        choose_flavor(FLAVORS, "xl")


def test_too_small_flavor_says_which_limit() -> None:
    with pytest.raises(ChoiceError, match=r"'lowram' is too small: 512 MiB RAM < 1024;") as exc:
        choose_flavor(FLAVORS, "lowram")
    assert "vCPU <" not in str(exc.value) and "disk <" not in str(exc.value)
    with pytest.raises(ChoiceError, match=r"1 vCPU < 2, 512 MiB RAM < 1024, 1 GB disk < 20"):
        choose_flavor(FLAVORS, "m1.tiny")


def test_no_big_enough_flavor() -> None:
    with pytest.raises(ChoiceError, match=r"no flavor with .* pass --flavor"):
        choose_flavor(FLAVORS[:1], None)


NETWORKS = [Network("n1", "public", ()), Network("n2", "private", ("s1",))]


def test_first_network_with_a_subnet() -> None:
    assert choose_network(NETWORKS, None).id == "n2"


def test_wanted_network() -> None:
    assert choose_network(NETWORKS, "private").id == "n2"
    with pytest.raises(ChoiceError, match="'dmz' not found; networks visible: private, pub"):
        choose_network(NETWORKS, "dmz")
    with pytest.raises(ChoiceError, match="network 'public' has no subnet"):
        choose_network(NETWORKS, "public")


def test_no_usable_network() -> None:
    with pytest.raises(ChoiceError, match="no usable network"):
        choose_network(NETWORKS[:1], None)
