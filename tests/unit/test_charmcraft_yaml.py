"""charmcraft.yaml checked with charmcraft's own models, since nothing here can pack the charm."""

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

CHARMCRAFT_YAML = Path(__file__).parents[2] / "charmcraft.yaml"


def validate(data: dict[str, Any]) -> None:
    """Raise if charmcraft would reject the file or Juju would misread it."""
    from charmcraft import parts
    from charmcraft.models.config import JujuConfig
    from charmcraft.models.metadata import CharmMetadata
    from charmcraft.models.project import CharmcraftProject

    parts.setup_parts()
    project = CharmcraftProject.unmarshal(copy.deepcopy(data))
    metadata = CharmMetadata.from_charm(project)
    JujuConfig.model_validate(data.get("config", {}))
    # charmcraft accepts an endpoint without an interface; Juju does not.
    for role in ("provides", "requires", "peers"):
        for endpoint, spec in (getattr(metadata, role) or {}).items():
            if not isinstance(spec, dict) or not spec.get("interface"):
                raise ValueError(f"{role}.{endpoint} has no interface")
    for name, action in (data.get("actions") or {}).items():
        if not isinstance(action, dict) or not action.get("description"):
            raise ValueError(f"action {name} has no description")


@pytest.fixture(scope="module")
def charmcraft_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CHARMCRAFT_YAML.read_text())
    return data


def test_our_charmcraft_yaml_is_valid(charmcraft_data: dict[str, Any]) -> None:
    validate(charmcraft_data)


def test_single_file_charm(charmcraft_data: dict[str, Any]) -> None:
    root = CHARMCRAFT_YAML.parent
    for legacy in ("metadata.yaml", "config.yaml", "actions.yaml"):
        assert not (root / legacy).exists(), f"{legacy} must live in charmcraft.yaml"
    assert charmcraft_data["base"] == "ubuntu@24.04"
    assert "amd64" in charmcraft_data["platforms"]


def _break_option_type(data: dict[str, Any]) -> None:
    data["config"]["options"]["build-interval"]["type"] = "integer"


def _drop_interface(data: dict[str, Any]) -> None:
    data["provides"]["image"] = {}


def _unknown_top_level_key(data: dict[str, Any]) -> None:
    data["metdata"] = {}


def _bad_base(data: dict[str, Any]) -> None:
    data["base"] = "ubuntu@99.99"


def _no_summary(data: dict[str, Any]) -> None:
    del data["summary"]


@pytest.mark.parametrize(
    "breakage",
    [_break_option_type, _drop_interface, _unknown_top_level_key, _bad_base, _no_summary],
)
def test_broken_copies_are_rejected(charmcraft_data: dict[str, Any], breakage: Any) -> None:
    broken = copy.deepcopy(charmcraft_data)
    breakage(broken)
    with pytest.raises(Exception):  # noqa: B017 - pydantic, craft and our own errors all count
        validate(broken)
