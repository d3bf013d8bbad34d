"""The Terraform module in terraform/, parsed with python-hcl2 and checked against charmcraft.yaml.

No terraform binary can be installed here, so `terraform validate` runs nowhere in this suite:
this checks the module's shape and its agreement with the charm, not the provider's schema.
"""

import re
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

ROOT = Path(__file__).parents[2]
MODULE = ROOT / "terraform"
CHARMCRAFT = yaml.safe_load((ROOT / "charmcraft.yaml").read_text())
REQUIRED_VARIABLES = {
    "app_name",
    "channel",
    "config",
    "constraints",
    "model_uuid",
    "revision",
    "base",
    "units",
}


def _plain(value: Any) -> Any:
    """Return a parsed value with python-hcl2's quotes and block markers taken off."""
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items() if k != "__is_block__"}
    return value


def _blocks(kind: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for path in sorted(MODULE.glob("*.tf")):
        with path.open() as file:
            parsed = _plain(hcl2.load(file))
        for block in parsed.get(kind, []):
            found.update(block)
    return found


def test_variables_follow_the_provider_conventions() -> None:
    variables = _blocks("variable")
    assert set(variables) == REQUIRED_VARIABLES
    for name, body in variables.items():
        assert body["description"].strip(), name
        assert "type" in body, name
    assert variables["model_uuid"].get("default", "no default") == "no default"  # required
    assert variables["app_name"]["default"] == CHARMCRAFT["name"]
    assert variables["base"]["default"] == CHARMCRAFT["base"]
    assert variables["config"]["type"] == "${map(string)}"
    assert variables["units"]["default"] == 1


def test_the_application_uses_every_variable_and_the_charms_name() -> None:
    (application,) = _blocks("resource")["juju_application"].values()
    assert application["model_uuid"] == "${var.model_uuid}"
    assert application["name"] == "${var.app_name}"
    (charm,) = application["charm"]
    assert charm == {
        "name": CHARMCRAFT["name"],
        "channel": "${var.channel}",
        "revision": "${var.revision}",
        "base": "${var.base}",
    }
    used = (
        {application[k] for k in ("config", "constraints", "units")}
        | {application["name"], application["model_uuid"]}
        | set(charm.values())
    )
    assert {f"${{var.{name}}}" for name in REQUIRED_VARIABLES} <= used


def test_outputs_name_only_endpoints_the_charm_provides() -> None:
    outputs = _blocks("output")
    assert set(outputs) == {"app_name", "provides"}
    assert outputs["app_name"]["value"] == "${juju_application.image_builder.name}"
    provides = outputs["provides"]["value"]
    assert set(provides.values()) == set(CHARMCRAFT["provides"])


def test_config_keys_the_module_documents_exist() -> None:
    options = set(CHARMCRAFT["config"]["options"])
    description = _blocks("variable")["config"]["description"]
    documented = set(re.findall(r"`([a-z][a-z0-9-]+)`", description))
    assert len(documented) >= 5
    assert documented <= options, documented - options
    # The docs' example plan sets only real options.
    howto = (ROOT / "docs" / "how-to" / "terraform.md").read_text()
    example_keys = set(re.findall(r'^\s+"?([a-z][a-z0-9-]+)"?\s+=', howto, re.MULTILINE))
    config_keys = {k for k in example_keys if "-" in k}
    assert config_keys
    assert config_keys <= options, config_keys - options


@pytest.mark.parametrize("provider_major", ["1", "2"])
def test_the_provider_constraint_admits_the_majors_with_model_uuid(provider_major: str) -> None:
    (versions,) = _blocks("terraform")["required_providers"]
    constraint = versions["juju"]["version"]
    assert versions["juju"]["source"] == "juju/juju"
    low, high = re.fullmatch(r">= (\d+)\.\d+, < (\d+)\.\d+", constraint).groups()  # type: ignore[union-attr]
    assert int(low) <= int(provider_major) < int(high)
