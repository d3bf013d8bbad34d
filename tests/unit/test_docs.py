"""The docs cannot silently fall behind: the reference names everything charmcraft.yaml, the CLI,
the metrics service and the alert rules define, and every relative link resolves."""

import argparse
import re
from pathlib import Path

import pytest
import yaml
from metric_names import exported

import relation_cos
from github_runner_image_builder.cli import build_parser

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"
CHARMCRAFT = yaml.safe_load((ROOT / "charmcraft.yaml").read_text())
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _section(path: Path, heading: str) -> str:
    """Return the text under the first `## ` heading that contains `heading`, to the next one."""
    text = path.read_text()
    match = re.search(
        rf"^## [^\n]*{re.escape(heading)}[^\n]*\n(.*?)(?=^## |\Z)", text, re.M | re.S
    )
    assert match, f"{path.name} has no section '## …{heading}…'"
    return match.group(1)


def _quoted(text: str) -> set[str]:
    return set(re.findall(r"`([^`\s]+)`", text))


def test_every_config_option_is_in_the_reference() -> None:
    options = set(CHARMCRAFT["config"]["options"])
    listed = _quoted(_section(REFERENCE / "charm.md", "Options"))
    assert options - listed == set()


def test_every_action_is_in_the_reference() -> None:
    for action in CHARMCRAFT["actions"]:
        assert _section(REFERENCE / "charm.md", f"`{action}` action")


def test_every_endpoint_has_a_reference_page() -> None:
    titles = {
        page.name: page.read_text().splitlines()[0] for page in sorted(REFERENCE.glob("*.md"))
    }
    for endpoint in CHARMCRAFT["provides"]:
        pages = [name for name, title in titles.items() if f"`{endpoint}` relation" in title]
        assert pages, f"no docs/reference page is titled '… `{endpoint}` relation …'"
        assert f"`{endpoint}`" in (REFERENCE / "charm.md").read_text()


def test_every_cli_command_and_option_is_in_the_reference() -> None:
    text = (REFERENCE / "cli.md").read_text()
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert commands.choices
    for name, sub in commands.choices.items():
        assert re.search(rf"^## `{re.escape(name)}\b", text, re.M), f"no section for `{name}`"
        for action in sub._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert f"`{flag}" in text, f"{name} {flag} is not in reference/cli.md"


def test_every_metric_is_in_the_reference() -> None:
    text = (REFERENCE / "metrics.md").read_text()
    # A histogram's three series are one family, documented once.
    families = {
        re.sub(r"_(bucket|sum|count)$", "", n) if n.endswith(("_bucket", "_sum", "_count")) else n
        for n in exported()
    }
    missing = {name for name in families if f"`{name}`" not in text}
    assert missing == set()


def _alerts(rules_dir: Path) -> set[str]:
    names = set()
    for path in rules_dir.glob("*.rules"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule["alert"] for rule in group["rules"]}
    return names


def test_every_alert_rule_is_in_the_reference() -> None:
    listed = _quoted((REFERENCE / "alert-rules.md").read_text())
    alerts = _alerts(relation_cos.METRIC_RULES_DIR) | _alerts(relation_cos.LOG_RULES_DIR)
    assert len(alerts) >= 6
    assert alerts - listed == set()


def _pages() -> list[Path]:
    top = [ROOT / name for name in ("README.md", "CHANGELOG.md", "CONTRIBUTING.md", "SECURITY.md")]
    return top + sorted(DOCS.rglob("*.md"))


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.relative_to(ROOT)} links to missing {target}"


def test_every_docs_page_is_in_the_index() -> None:
    linked = {
        (DOCS / target).resolve() for target in LINK.findall((DOCS / "index.md").read_text())
    }
    pages = {p.resolve() for p in DOCS.rglob("*.md")} - {(DOCS / "index.md").resolve()}
    assert pages - linked == set()


def test_readme_links_the_tutorial_first() -> None:
    docs_links = [t for t in LINK.findall((ROOT / "README.md").read_text()) if "docs/" in t]
    assert docs_links
    assert docs_links[0].startswith("docs/tutorial/")
