"""The cos-agent relation: the databag a collector reads, and rules checked on real build logs."""

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cosl import LZMABase64
from metric_names import USED, exported
from ops import testing

import machine_files
import metrics
import relation_cos
from charm import GithubRunnerImageBuilderCharm
from charm_helpers import (
    FAKE_JUJU_EXEC,
    PASSWORD,
    REQUIRER_PASSWORD,
    RUNNERS,
    SCRIPT_SECRET,
    Machine,
    base_state,
    emit,
    image_relation,
    script,
    script_secret,
    wait_until,
)

Ctx = testing.Context[GithubRunnerImageBuilderCharm]
APP = "github-runner-image-builder"

# What the requirer (COSAgentRequirer in opentelemetry-collector / grafana-agent) validates:
# these keys must be present with these JSON types; the optional ones may be null.
REQUIRED = {
    "metrics_alert_rules": dict,
    "log_alert_rules": dict,
    "dashboards": list,
    "metrics_scrape_jobs": list,
    "log_slots": list,
}
OPTIONAL = {"subordinate": bool, "include_log_files": list, "tracing_protocols": list}


def cos_relation(**kwargs: Any) -> testing.Relation:
    return testing.Relation("cos-agent", remote_app_name="opentelemetry-collector", **kwargs)


def unit_data(state: testing.State, relation: testing.Relation) -> dict[str, str]:
    data: dict[str, str] = dict(state.get_relation(relation.id).local_unit_data)
    return data


def published(state: testing.State, relation: testing.Relation) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(unit_data(state, relation)["config"])
    return data


def rules_by_name(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    groups = data["log_alert_rules"]["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def line_filters(expr: str) -> list[re.Pattern[str]]:
    """Return the LogQL line-filter regexes (backtick strings) of an expression.

    Their syntax (classes, \\S, \\s, $) means the same in RE2 and Python's re, and `|~` is an
    unanchored search like re.search.
    """
    return [re.compile(text) for text in re.findall(r"`([^`]*)`", expr)]


@pytest.fixture
def no_venv(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let upgrade-charm run its install without CLI wheels (install is tested elsewhere)."""
    monkeypatch.setattr(machine_files.MachineFiles, "_install_venv", lambda self: None)


def test_joined_publishes_what_the_collector_validates(ctx: Ctx, machine: Machine) -> None:
    relation = cos_relation()
    state = base_state(relation)
    out = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)

    data = published(out, relation)
    assert set(data) == set(REQUIRED) | set(OPTIONAL)
    for key, kind in {**REQUIRED, **OPTIONAL}.items():
        assert isinstance(data[key], kind), key
    # The metrics service on this machine's loopback, and the rules on its metrics.
    (job,) = data["metrics_scrape_jobs"]
    assert job["static_configs"] == [{"targets": [f"localhost:{metrics.PORT}"]}]
    assert job["metrics_path"] == "/metrics"
    metric_rules = [r for g in data["metrics_alert_rules"]["groups"] for r in g["rules"]]
    assert {r["alert"] for r in metric_rules} == {
        "RunnerImageStale",
        "RunnerImageBuildsKeepFailing",
        "RunnerImageNeverBuilt",
    }
    assert all(r["labels"]["juju_application"] == APP for r in metric_rules)
    assert data["log_slots"] == []
    assert data["subordinate"] is False
    assert data["tracing_protocols"] == []
    assert all(isinstance(d, str) for d in data["dashboards"])


def test_log_files_cover_the_build_log_but_not_rotated_copies(ctx: Ctx, machine: Machine) -> None:
    relation = cos_relation()
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), base_state(relation))

    (pattern,) = published(out, relation)["include_log_files"]
    log_dir = machine.paths.log_dir
    assert fnmatch.fnmatch(str(machine.paths.build_log), pattern)
    assert fnmatch.fnmatch(str(log_dir / "cron.log"), pattern)
    assert not fnmatch.fnmatch(str(log_dir / "build.log.1"), pattern)
    assert not fnmatch.fnmatch(str(log_dir / "build.log.2.gz"), pattern)
    assert not fnmatch.fnmatch(str(machine.paths.clouds_yaml), pattern)


def test_log_rules_carry_this_units_topology(ctx: Ctx, machine: Machine) -> None:
    relation = cos_relation()
    state = base_state(relation)
    out = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)

    data = published(out, relation)
    rules = rules_by_name(data)
    assert set(rules) == {
        "ImageBuildsFailing",
        "ImageBuildsStalled",
        "ImageBuildResultNotDelivered",
    }
    for group in data["log_alert_rules"]["groups"]:
        # cosl prefixes the group with the topology identifier (made a valid metric name):
        # unique per application.
        identifier = f"{state.model.name}_{state.model.uuid[:8]}_{APP}_"
        assert group["name"].startswith(re.sub(r"[^a-zA-Z0-9_:]", "_", identifier))
    for name, rule in rules.items():
        assert rule["labels"]["juju_model"] == state.model.name, name
        assert rule["labels"]["juju_model_uuid"] == state.model.uuid, name
        assert rule["labels"]["juju_application"] == APP, name
        assert rule["labels"]["juju_charm"] == APP, name
        assert rule["labels"]["severity"] == "warning", name
        assert "juju_unit" not in rule["labels"], name  # would match one unit only
        # The placeholder became a selector Loki accepts (never an empty `{}`).
        assert "%%juju_topology%%" not in rule["expr"], name
        assert '{job=~".+"}' in rule["expr"], name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_dashboard_decodes_and_queries_loki(ctx: Ctx, machine: Machine) -> None:
    relation = cos_relation()
    out = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), base_state(relation))

    (encoded,) = published(out, relation)["dashboards"]
    dashboard = json.loads(LZMABase64.decompress(encoded))
    assert dashboard["title"] == "GitHub runner image builds"
    assert re.fullmatch(r"[0-9a-f]{40}", dashboard["uid"])
    assert f"charm: {APP}" in dashboard["tags"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["lokids"]["type"] == "datasource"
    assert variables["lokids"]["query"] == "loki"
    assert variables["promds"]["type"] == "datasource"
    assert variables["promds"]["query"] == "prometheus"
    targets = [t for panel in dashboard["panels"] for t in panel.get("targets", [])]
    logs = [t for t in targets if t["datasource"] == {"type": "loki", "uid": "${lokids}"}]
    figures = [t for t in targets if t["datasource"] == {"type": "prometheus", "uid": "${promds}"}]
    assert len(logs) == 6
    assert len(logs) + len(figures) == len(targets)
    for target in targets:
        # Every selector names its labels through the dashboard's own variables.
        assert '{juju_model=~"$juju_model"' in target["expr"]
    for target in logs:
        for pattern in line_filters(target["expr"]):
            assert pattern.pattern
    # Every metric a panel queries is one the metrics service serves.
    queried = {name for t in figures for name in USED.findall(t["expr"])}
    assert len(queried) >= 10
    assert queried <= exported(), queried - exported()
    panel_types = sorted(panel["type"] for panel in dashboard["panels"] if panel["type"] != "row")
    assert panel_types.count("logs") == 2
    assert {"stat", "timeseries", "bargauge"} <= set(panel_types)


def test_dashboard_uid_is_the_same_on_every_unit(machine: Machine) -> None:
    relation = cos_relation()
    uids = []
    for unit_id in (0, 3):
        ctx = testing.Context(GithubRunnerImageBuilderCharm, unit_id=unit_id)
        out = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), base_state(relation))
        (encoded,) = published(out, relation)["dashboards"]
        uids.append(json.loads(LZMABase64.decompress(encoded))["uid"])
    assert uids[0] == uids[1]


def test_broken_dashboard_is_skipped_with_its_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "broken.json").write_text('{"title": ')
    (tmp_path / "own-tag.json").write_text('{"title": "t", "tags": ["charm: custom"]}')

    (encoded,) = relation_cos.dashboards(tmp_path, APP)

    dashboard = json.loads(LZMABase64.decompress(encoded))
    assert dashboard["tags"] == ["charm: custom"]  # a charm tag of its own is kept
    assert "dashboard broken.json is not valid JSON, not published" in caplog.text


def test_upgrade_republishes_over_stale_data(ctx: Ctx, machine: Machine, no_venv: None) -> None:
    relation = cos_relation(local_unit_data={"config": '{"dashboards": []}'})
    out = ctx.run(ctx.on.upgrade_charm(), base_state(relation))

    data = published(out, relation)
    assert len(data["dashboards"]) == 1
    assert rules_by_name(data)


def test_nothing_is_published_without_the_relation(
    ctx: Ctx, machine: Machine, no_venv: None
) -> None:
    relation = image_relation()
    out = ctx.run(ctx.on.upgrade_charm(), base_state(relation))
    assert "config" not in unit_data(out, relation)
    # The output's own relation object: the hook may have written to its data.
    joined = out.get_relation(relation.id)
    out = ctx.run(ctx.on.relation_joined(joined, remote_unit=0), out)
    assert "config" not in unit_data(out, relation)


def test_no_secret_reaches_the_collector(ctx: Ctx, machine: Machine, no_venv: None) -> None:
    cos = cos_relation()
    images = image_relation()
    secret = script_secret()
    state = base_state(cos, images, **{"script-secret-id": secret.id})
    state = testing.State(
        config=state.config,
        secrets={*state.secrets, secret},
        relations=state.relations,
        leader=True,
    )
    out = ctx.run(ctx.on.config_changed(), state)
    out = ctx.run(ctx.on.relation_changed(images, remote_unit=0), out)
    out = ctx.run(ctx.on.upgrade_charm(), out)
    out = ctx.run(ctx.on.relation_changed(out.get_relation(cos.id), remote_unit=0), out)

    everything = json.dumps(unit_data(out, cos))
    decoded = [LZMABase64.decompress(d) for d in published(out, cos)["dashboards"]]
    for text in [everything, *decoded]:
        for value in (PASSWORD, REQUIRER_PASSWORD, SCRIPT_SECRET, "clouds.yaml"):
            assert value not in text


# --- the rules against the lines a real build run writes ------------------------------------


def _run_build(ctx: Ctx, machine: Machine, state: testing.State, done: int) -> testing.State:
    out = ctx.run(ctx.on.action("run"), state)
    machine.wait_for_callbacks(done)
    return emit(ctx, out, "build_finished")


def _build_log(machine: Machine) -> list[str]:
    return machine.paths.build_log.read_text().splitlines()


def _matching(lines: list[str], pattern: re.Pattern[str]) -> list[str]:
    return [line for line in lines if pattern.search(line)]


def test_failure_rule_tells_failed_builds_from_good_ones(ctx: Ctx, machine: Machine) -> None:
    cos = cos_relation()
    images = image_relation()
    state = base_state(cos, images, **{"base-image": "jammy,noble"})
    state = ctx.run(ctx.on.relation_joined(cos, remote_unit=0), state)
    rule = rules_by_name(published(state, cos))["ImageBuildsFailing"]
    failing, succeeded = line_filters(rule["expr"])

    machine.plan()  # every base built
    state = _run_build(ctx, machine, state, 1)
    machine.plan(build={"fail_bases": ["noble"]})  # CLI exits 1, jammy still published
    state = _run_build(ctx, machine, state, 2)
    machine.plan(build={"stdout": "Traceback: not JSON", "exit": 0})  # no usable answer
    state = _run_build(ctx, machine, state, 3)
    machine.plan(build={"stdout": "", "exit": 2})  # usage error
    _run_build(ctx, machine, state, 4)

    finished = [line for line in _build_log(machine) if " finished: exit " in line]
    assert len(finished) == 4
    assert _matching(finished, succeeded) == finished[:1]
    assert _matching(finished, failing) == finished[1:]


def test_stalled_rule_counts_lookups_and_builds(ctx: Ctx, machine: Machine) -> None:
    cos = cos_relation()
    images = image_relation()
    state = ctx.run(ctx.on.relation_joined(cos, remote_unit=0), base_state(cos, images))
    (finished,) = line_filters(rules_by_name(published(state, cos))["ImageBuildsStalled"]["expr"])

    machine.plan(latest={f"{RUNNERS}/{APP}-noble-x64": "old-noble"})
    state = ctx.run(ctx.on.relation_changed(images, remote_unit=0), state)
    machine.wait_for_callbacks(1)  # a lookup found the image: no build
    state = emit(ctx, state, "build_finished")
    _run_build(ctx, machine, state, 2)

    lines = _build_log(machine)
    hits = _matching(lines, finished)
    assert [h.split(" build_runner: ")[1].split(" ")[0] for h in hits] == ["lookup", "build"]
    assert not _matching([line for line in lines if "starting" in line], finished)


def test_callback_rule_fires_only_when_the_charm_was_not_told(ctx: Ctx, machine: Machine) -> None:
    cos = cos_relation()
    images = image_relation()
    state = ctx.run(ctx.on.relation_joined(cos, remote_unit=0), base_state(cos, images))
    rule = rules_by_name(published(state, cos))["ImageBuildResultNotDelivered"]
    (undelivered,) = line_filters(rule["expr"])

    state = _run_build(ctx, machine, state, 1)
    assert not _matching(_build_log(machine), undelivered)
    # The charm's handler failing makes juju-exec exit non-zero.
    failing_exec = FAKE_JUJU_EXEC.replace(
        'calls.write(json.dumps(sys.argv[1:]) + "\\n")',
        'calls.write(json.dumps(sys.argv[1:]) + "\\n")\nsys.exit(3)',
    )
    assert failing_exec != FAKE_JUJU_EXEC
    script(
        machine.paths.juju_exec,
        failing_exec.format(python=machine.paths.system_python, home=str(machine.home)),
    )
    _run_build(ctx, machine, state, 2)
    # The runner logs the callback's exit code after juju-exec returns, so after the lock is free.
    wait_until(lambda: bool(_matching(_build_log(machine), undelivered)))
    (hit,) = _matching(_build_log(machine), undelivered)
    assert hit.endswith("juju-exec build-finished exited 3")
