"""The metric names the exporter serves, for tests that check rules and panels against them."""

import datetime
import re

from prometheus_client import CollectorRegistry, generate_latest

import job
import metrics

USED = re.compile(r"\b(github_runner_image_builder_[a-z_]+)")


def exported() -> set[str]:
    """Return every sample name a scrape can serve (a histogram as its three series)."""
    now = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
    run = job.RunRecord(run_id="r2", started_at=now)
    result = job.BuildResult(run_id="r1", started_at=now, finished_at=now, exit_code=0)
    history = metrics.History(requirer_since=now, build_interval_hours=6, last_duration=1.0)
    records = metrics.Records(
        history=history.fold(result, []),
        current=run,
        last_result=result,
        queued=False,
        catalogue={},
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.RecordsCollector(lambda: records, clock=lambda: now))
    names: set[str] = set()
    for name, kind in re.findall(
        r"^# TYPE (\S+) (\S+)$", generate_latest(registry).decode(), re.M
    ):
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return names
