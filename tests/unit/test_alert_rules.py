"""The Prometheus alert rules, run by Prometheus's own `promtool test rules`.

promtool comes from Debian's `prometheus` package. Where it is missing, the fixture installs it
when it can (root and apt-get, as on CI); otherwise the tests skip and say why. On CI (CI set)
a failed install fails the tests instead of skipping them.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from cosl import JujuTopology
from metric_names import USED, exported

import relation_cos

HERE = Path(__file__).parent
RULES = relation_cos.METRIC_RULES_DIR / "image_builds.rules"
RULE_TESTS = HERE / "prometheus_rules_test.yaml"


def _install_promtool() -> str:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "promtool is missing and cannot be installed here (needs root and apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"],
    ):
        run = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if run.returncode != 0:
            return f"`{' '.join(command)}` failed: {run.stderr.strip()[-500:]}"
    return ""


@pytest.fixture(scope="session")
def promtool() -> str:
    """Return promtool's path, installing Debian's `prometheus` package when it can."""
    found = shutil.which("promtool")
    if found is None:
        problem = _install_promtool()
        found = shutil.which("promtool")
        if found is None:
            message = problem or "apt installed `prometheus` but promtool is not on PATH"
            if os.environ.get("CI"):
                pytest.fail(f"promtool unavailable on CI: {message}")
            pytest.skip(f"alert rule tests need promtool: {message}")
    return found


def test_rules_behave_as_promtool_runs_them(promtool: str) -> None:
    run = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=HERE,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_published_rules_with_topology_are_valid(promtool: str, tmp_path: Path) -> None:
    topology = JujuTopology(
        model="m", model_uuid="00000000-0000-4000-8000-000000000000", application="grib"
    )
    published = relation_cos.metric_alert_rules(relation_cos.METRIC_RULES_DIR, topology)
    rules = [rule for group in published["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} == {
        "RunnerImageStale",
        "RunnerImageBuildsKeepFailing",
        "RunnerImageNeverBuilt",
    }
    assert all(rule["labels"]["juju_application"] == "grib" for rule in rules)
    path = tmp_path / "published.rules"
    path.write_text(yaml.safe_dump(published))
    run = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_metric_a_rule_or_test_names_is_exported() -> None:
    used = set(USED.findall(RULES.read_text())) | set(USED.findall(RULE_TESTS.read_text()))
    assert used
    assert used <= exported(), used - exported()


def test_rule_tests_cover_every_alert() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"]}
    assert alerts == tested
