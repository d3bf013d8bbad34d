"""The `cos-agent` relation: what this unit hands a COS collector on the same machine.

The collector is opentelemetry-collector or grafana-agent, related as a subordinate. It gets
the metrics service's scrape job (src/metrics_service.py: loopback, this machine) with the
Prometheus alert rules on those metrics, the build logs' path with Loki alert rules on their
lines, and a Grafana dashboard of both.

Wire format (the provider side of the `cos_agent` interface, as the collectors' COSAgentRequirer
reads it): one key, `config`, in this unit's databag, holding a JSON object with
`metrics_alert_rules` and `log_alert_rules` (rule files as dicts, `{"groups": [...]}`, or `{}`),
`dashboards` (each dashboard JSON, LZMA-compressed and base64-encoded), `metrics_scrape_jobs`
(Prometheus scrape_configs), `log_slots` (snap slots), `include_log_files` (file globs),
`subordinate` and `tracing_protocols`. Requirers ignore keys they do not know, so
`include_log_files` is harmless to a collector that predates it.
"""

import json
import logging
from pathlib import Path
from typing import Any

import ops
import pydantic
from cosl import DashboardPath40UID, JujuTopology, LZMABase64
from cosl.rules import AlertRules

import metrics_service

logger = logging.getLogger(__name__)

RELATION_NAME = "cos-agent"
DATABAG_KEY = "config"
# Shipped inside the charm next to this module (src/ in the packed charm and in the repo).
HERE = Path(__file__).parent
LOG_RULES_DIR = HERE / "loki_alert_rules"
METRIC_RULES_DIR = HERE / "prometheus_alert_rules"
DASHBOARDS_DIR = HERE / "grafana_dashboards"


class CosAgentData(pydantic.BaseModel):
    """The provider unit's `config` value, field for field as the requirer validates it."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    metrics_alert_rules: dict[str, Any]
    log_alert_rules: dict[str, Any]
    dashboards: list[str]
    metrics_scrape_jobs: list[dict[str, Any]]
    log_slots: list[str]
    include_log_files: list[str]
    subordinate: bool
    tracing_protocols: list[str]


def log_alert_rules(rules_dir: Path, topology: JujuTopology) -> dict[str, Any]:
    """Return the Loki rules of `rules_dir` with this unit's Juju topology as labels.

    cosl names each group after the topology and sets juju_model, juju_model_uuid,
    juju_application and juju_charm on every rule; the `%%juju_topology%%` placeholder in an
    expression becomes a selector the collector's side narrows to this application.
    """
    rules = AlertRules(query_type="logql", topology=topology)
    rules.add_path(rules_dir)
    return rules.as_dict()


def metric_alert_rules(rules_dir: Path, topology: JujuTopology) -> dict[str, Any]:
    """Return the Prometheus rules of `rules_dir` labelled with this unit's Juju topology."""
    rules = AlertRules(query_type="promql", topology=topology)
    rules.add_path(rules_dir)
    return rules.as_dict()


def dashboards(dashboards_dir: Path, charm_name: str) -> list[str]:
    """Return every dashboard of `dashboards_dir`, encoded for the relation.

    The uid is derived from the charm's name and the file's path in the charm, so a dashboard
    keeps its identity (and Grafana its bookmarks) across charm revisions and units.
    """
    encoded: list[str] = []
    for path in sorted(dashboards_dir.glob("*.json")):
        try:
            dashboard = json.loads(path.read_text())
        except ValueError as error:
            # A broken file must not stop the logs and rules from being published.
            logger.error("dashboard %s is not valid JSON, not published: %s", path.name, error)
            continue
        in_charm = f"src/{dashboards_dir.name}/{path.name}"
        dashboard["uid"] = DashboardPath40UID.generate(charm_name, in_charm)
        tags = [str(tag) for tag in dashboard.get("tags", [])]
        if not any(tag.startswith("charm: ") for tag in tags):
            tags.append(f"charm: {charm_name}")
        dashboard["tags"] = tags
        encoded.append(LZMABase64.compress(json.dumps(dashboard)))
    return encoded


def build_data(
    topology: JujuTopology,
    charm_name: str,
    log_dir: Path,
    rules_dir: Path,
    dashboards_dir: Path,
    *,
    scrape_jobs: list[dict[str, Any]],
    metric_rules_dir: Path = METRIC_RULES_DIR,
) -> CosAgentData:
    """Return what this unit publishes: metrics and logs, the rules on them, the dashboards."""
    return CosAgentData(
        metrics_alert_rules=metric_alert_rules(metric_rules_dir, topology),
        log_alert_rules=log_alert_rules(rules_dir, topology),
        dashboards=dashboards(dashboards_dir, charm_name),
        metrics_scrape_jobs=scrape_jobs,
        log_slots=[],  # the CLI is no snap
        # build.log and cron.log; logrotate's build.log.1 etc. do not match, so nothing twice.
        include_log_files=[str(log_dir / "*.log")],
        subordinate=False,
        tracing_protocols=[],
    )


class CosAgentProvider(ops.Object):
    """Publishes this unit's telemetry on every `cos-agent` relation.

    Re-published whenever the relation is joined or changes and after every upgrade, since a new
    charm revision may bring new rules or dashboards.
    """

    def __init__(self, charm: ops.CharmBase, log_dir: Path) -> None:
        super().__init__(charm, RELATION_NAME)
        self._charm = charm
        self._log_dir = log_dir
        events = charm.on[RELATION_NAME]
        self.framework.observe(events.relation_joined, self._publish)
        self.framework.observe(events.relation_changed, self._publish)
        self.framework.observe(charm.on.upgrade_charm, self._publish)

    def _publish(self, _: ops.EventBase) -> None:
        relations = self.model.relations[RELATION_NAME]
        if not relations:
            return
        data = build_data(
            JujuTopology.from_charm(self._charm),
            self._charm.meta.name,
            self._log_dir,
            LOG_RULES_DIR,
            DASHBOARDS_DIR,
            scrape_jobs=metrics_service.scrape_jobs(),
        )
        value = data.model_dump_json()
        for relation in relations:
            relation.data[self.model.unit][DATABAG_KEY] = value
