"""Build figures for Prometheus: the history the charm folds results into, and the collector.

The charm keeps only the last build's result, so figures that outlive one build (the last
success per base/arch, failure counts, the build time of each served image) are folded into
`metrics-history.json` once per result, identified by its run id. The exporter service
(src/metrics_exporter.py) reads that history and the charm's own records (current.json,
result.json, the queued flag, the catalogue, through src/job_records.py) on every scrape; it
never writes, never takes the build lock, and never reads clouds.yaml or any secret. Labels are
only base, arch, cloud id, step and outcome.
"""

import datetime
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pydantic
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

import durable_files
from catalogue import Catalogue
from image_builder_contract.names import Step
from job import BUILD_CLOUD, BUILD_TIMEOUT, BuildResult, ResultKind, RunRecord
from job_records import JobRecords

logger = logging.getLogger(__name__)

PREFIX = "github_runner_image_builder"
HISTORY_FILE = "metrics-history.json"
PORT = 9467  # loopback only; the COS collector on the machine scrapes it
# Upper bounds (seconds) of the build duration histogram: 5 min to the CLI's 2 h timeout.
DURATION_BUCKETS = (300.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0, 5400.0, 7200.0, 9000.0)
# Upper bounds (seconds) of the verification duration histogram: 1 min to an hour.
VERIFY_BUCKETS = (60.0, 120.0, 180.0, 300.0, 450.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0)
VERIFY_STEP = Step.VERIFY.value  # the step that boots and checks a new image
OUTCOMES = ("success", "partial", "failed", "lookup")
JOB_STEP = "job"  # the step label of a failure of the whole job (crash, timeout, no result)


def series_key(base: str, arch: str) -> str:
    """Return how the history keys one (base, arch) series: "noble/x64"."""
    return f"{base}/{arch}"


def outcome(result: BuildResult) -> str:
    """Return what a finished job amounted to: success, partial, failed or lookup."""
    # No build ran: existing images were served.
    if result.kind in (ResultKind.LOOKUP, ResultKind.COPY):
        return "lookup"
    if result.error or not result.images:
        return "failed"
    return "partial" if result.failures or result.exit_code != 0 else "success"


class FailureCount(pydantic.BaseModel):
    """How often one (base, arch) failed at one step."""

    base: str
    arch: str
    step: str
    count: int = 0


class History(pydantic.BaseModel):
    """What the figures need beyond the last result; written by the charm, read by the exporter."""

    recorded_run: str = ""  # the run id of the last result folded in
    last_success: dict[str, datetime.datetime] = {}  # "base/arch" -> end of its last good build
    built_at: dict[str, datetime.datetime] = {}  # image id -> when built (or found by a lookup)
    outcomes: dict[str, int] = {}
    failures: list[FailureCount] = []
    consecutive_failed: int = 0  # builds in a row with any failure; a full success resets it
    duration_buckets: list[int] = [0] * (len(DURATION_BUCKETS) + 1)  # last one: +Inf
    duration_sum: float = 0.0
    last_duration: float | None = None
    verify_buckets: list[int] = [0] * (len(VERIFY_BUCKETS) + 1)  # last one: +Inf
    verify_sum: float = 0.0
    last_verify: dict[str, float] = {}  # "base/arch" -> seconds its last verification took
    requirer_clouds: int = 0
    requirer_since: datetime.datetime | None = None  # since when a requirer gave credentials
    build_interval_hours: int | None = None

    @pydantic.model_validator(mode="after")
    def _same_buckets(self) -> "History":
        # Counts kept under other bucket bounds (an older charm) cannot be re-binned: restart.
        if len(self.duration_buckets) != len(DURATION_BUCKETS) + 1:
            self.duration_buckets = [0] * (len(DURATION_BUCKETS) + 1)
            self.duration_sum = 0.0
        if len(self.verify_buckets) != len(VERIFY_BUCKETS) + 1:
            self.verify_buckets = [0] * (len(VERIFY_BUCKETS) + 1)
            self.verify_sum = 0.0
        return self

    def fold(self, result: BuildResult, served_ids: Iterable[str]) -> "History":
        """Return the history with one more finished job; the same run twice counts once.

        `served_ids` are the image ids the catalogue holds now: the build times of other
        images are dropped, so the file stays as small as the catalogue.
        """
        if result.run_id == self.recorded_run:
            return self
        kind = outcome(result)
        data = self.model_copy(deep=True)
        data.recorded_run = result.run_id
        data.outcomes[kind] = data.outcomes.get(kind, 0) + 1
        # The build cloud's own copy (the source of later copies) serves no requirer.
        images = [image for image in result.images if image.cloud != BUILD_CLOUD]
        for image in images:
            data.built_at.setdefault(image.id, result.finished_at)
        keep = set(served_ids) | {image.id for image in images}
        data.built_at = {i: t for i, t in data.built_at.items() if i in keep}
        if kind == "lookup":
            return data
        for image in images:
            data.last_success[series_key(image.base, image.arch)] = result.finished_at
        for failure in result.failures:
            data._count_failure(failure.base, failure.arch, failure.where or "unknown")
        if result.error:
            data._count_failure("", "", JOB_STEP)
        data.consecutive_failed = 0 if kind == "success" else data.consecutive_failed + 1
        seconds = max(0.0, (result.finished_at - result.started_at).total_seconds())
        data.last_duration = seconds
        data.duration_sum += seconds
        data.duration_buckets[_bucket_index(DURATION_BUCKETS, seconds)] += 1
        # Every verification that ran counts, passed or failed: both took the test server's time.
        for times in result.timings:
            if (verified := times.steps.get(VERIFY_STEP)) is not None:
                data.last_verify[series_key(times.base, times.arch)] = verified
                data.verify_sum += verified
                data.verify_buckets[_bucket_index(VERIFY_BUCKETS, verified)] += 1
        return data

    def _count_failure(self, base: str, arch: str, step: str) -> None:
        for entry in self.failures:
            if (entry.base, entry.arch, entry.step) == (base, arch, step):
                entry.count += 1
                return
        self.failures.append(FailureCount(base=base, arch=arch, step=step, count=1))

    def with_requirers(
        self, clouds: int, build_interval_hours: int | None, now: datetime.datetime
    ) -> "History":
        """Return the history with the number of requirer clouds and the build interval now."""
        since = self.requirer_since if clouds else None
        if clouds and since is None:
            since = now
        interval = build_interval_hours or self.build_interval_hours
        return self.model_copy(
            update={
                "requirer_clouds": clouds,
                "requirer_since": since,
                "build_interval_hours": interval,
            }
        )


def _bucket_index(bounds: tuple[float, ...], seconds: float) -> int:
    """Return the histogram bucket a value falls in (-1: above every bound, +Inf)."""
    return next((i for i, bound in enumerate(bounds) if seconds <= bound), -1)


def _histogram(
    name: str, documentation: str, bounds: tuple[float, ...], counts: list[int], total: float
) -> HistogramMetricFamily:
    """Return a histogram family from per-bucket counts (prometheus wants them cumulative)."""
    family = HistogramMetricFamily(name, documentation)
    cumulative, buckets = 0, []
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        cumulative += count
        buckets.append((str(bound) if bound != float("inf") else "+Inf", float(cumulative)))
    family.add_metric([], buckets=buckets, sum_value=total)
    return family


def _per_series(name: str, documentation: str, values: dict[str, float]) -> GaugeMetricFamily:
    """Return a gauge labelled base and arch from values keyed as series_key makes them."""
    family = GaugeMetricFamily(name, documentation, labels=["base", "arch"])
    for key_, value in sorted(values.items()):
        base, _, arch = key_.partition("/")
        family.add_metric([base, arch], value)
    return family


def history_path(state_dir: Path) -> Path:
    """Return where the history lives in the unit's state folder."""
    return state_dir / HISTORY_FILE


def load_history(state_dir: Path) -> History:
    """Return the history, empty when there is none yet or it cannot be read."""
    return durable_files.peek_model(history_path(state_dir), History) or History()


def save_history(state_dir: Path, history: History) -> None:
    """Write the history atomically and durably (0600, like every file in the state folder)."""
    durable_files.write_atomic(history_path(state_dir), history.model_dump_json())


class Records(pydantic.BaseModel):
    """The unit's records as the exporter reads them on one scrape."""

    history: History
    current: RunRecord | None
    last_result: BuildResult | None
    queued: bool
    catalogue: dict[str, dict[str, str]]  # cloud id -> "base/arch" -> image id

    @property
    def running(self) -> bool:
        """A job runs from its start until its result is written (the runner's last act).

        A job killed before writing one looks running until the charm records it as failed
        (its next hook, update-status at the latest). The exporter must not probe the build
        lock: holding it even briefly would make a hook queue instead of start.
        """
        if self.current is None:
            return False
        return self.last_result is None or self.last_result.run_id != self.current.run_id


def read_records(records: JobRecords) -> Records:
    """Return the unit's records now, as `records` reads them (read-only for the metrics)."""
    run = records.current()
    last = records.result()
    try:
        served: dict[str, dict[str, str]] = {}
        for image in (records.load_catalogue() or Catalogue()).images:
            served.setdefault(image.cloud, {})[series_key(image.base, image.arch)] = image.id
    except (OSError, ValueError, AttributeError) as error:
        logger.warning("ignoring unreadable catalogue: %s", error)
        served = {}
    return Records(
        history=load_history(records.paths.state_dir),
        current=run,
        last_result=last,
        queued=records.queued(),
        catalogue=served,
    )


def families(records: Records, now: datetime.datetime) -> Iterator[Metric]:
    """Yield every metric family of one scrape, computed from the records at `now`."""
    history = records.history

    yield _per_series(
        f"{PREFIX}_last_success_timestamp_seconds",
        "When the last build that produced an image of this base and arch ended (Unix time).",
        {key_: when.timestamp() for key_, when in history.last_success.items()},
    )

    age = GaugeMetricFamily(
        f"{PREFIX}_served_image_age_seconds",
        "Age of the image each requirer cloud is served, per base and arch (an image found by a "
        "lookup counts from when it was found).",
        labels=["cloud", "base", "arch"],
    )
    published = GaugeMetricFamily(
        f"{PREFIX}_published_images",
        "Images this unit publishes to each requirer cloud (one per base and arch).",
        labels=["cloud"],
    )
    for cloud, ids in sorted(records.catalogue.items()):
        published.add_metric([cloud], len(ids))
        for key_, image_id in sorted(ids.items()):
            built = history.built_at.get(image_id)
            if built is not None:
                base, _, arch = key_.partition("/")
                age.add_metric([cloud, base, arch], max(0.0, (now - built).total_seconds()))
    yield age
    yield published

    yield _histogram(
        f"{PREFIX}_build_duration_seconds",
        "Wall time of each finished build, from start to result (lookups not counted).",
        DURATION_BUCKETS,
        history.duration_buckets,
        history.duration_sum,
    )

    last = GaugeMetricFamily(
        f"{PREFIX}_last_build_duration_seconds", "Wall time of the last finished build."
    )
    if history.last_duration is not None:
        last.add_metric([], history.last_duration)
    yield last

    yield _histogram(
        f"{PREFIX}_verify_duration_seconds",
        "Time each image's verification took: booting a test server from the new image and "
        "running its checks (passed or failed).",
        VERIFY_BUCKETS,
        history.verify_buckets,
        history.verify_sum,
    )
    yield _per_series(
        f"{PREFIX}_last_verify_duration_seconds",
        "Time the last verification of this base and arch took.",
        history.last_verify,
    )

    failures = CounterMetricFamily(
        f"{PREFIX}_build_failures",
        f"Failures by base, arch and the step that failed ('{JOB_STEP}': the whole job).",
        labels=["base", "arch", "step"],
    )
    for entry in history.failures:
        failures.add_metric([entry.base, entry.arch, entry.step], entry.count)
    yield failures

    builds = CounterMetricFamily(
        f"{PREFIX}_builds",
        "Finished jobs by outcome: success, partial (some base failed), failed, lookup "
        "(existing images found, nothing built).",
        labels=["outcome"],
    )
    for name in OUTCOMES:
        builds.add_metric([name], history.outcomes.get(name, 0))
    yield builds

    yield GaugeMetricFamily(
        f"{PREFIX}_consecutive_failed_builds",
        "Builds in a row that had any failure; a build without failure resets it.",
        value=history.consecutive_failed,
    )
    yield GaugeMetricFamily(
        f"{PREFIX}_build_running", "1 while a build job runs.", value=int(records.running)
    )
    yield GaugeMetricFamily(
        f"{PREFIX}_build_queued",
        "1 while a rebuild waits for the running job.",
        value=int(records.queued),
    )
    started = GaugeMetricFamily(
        f"{PREFIX}_build_started_timestamp_seconds",
        "When the running build job started (Unix time); absent when none runs.",
    )
    if records.running and records.current is not None:
        started.add_metric([], records.current.started_at.timestamp())
    yield started

    yield GaugeMetricFamily(
        f"{PREFIX}_requirer_clouds",
        "Requirer clouds that gave credentials.",
        value=history.requirer_clouds,
    )
    since = GaugeMetricFamily(
        f"{PREFIX}_requirer_since_timestamp_seconds",
        "Since when a requirer has given credentials (Unix time); absent without one.",
    )
    if history.requirer_since is not None:
        since.add_metric([], history.requirer_since.timestamp())
    yield since

    interval = GaugeMetricFamily(
        f"{PREFIX}_build_interval_seconds", "The build-interval option, in seconds."
    )
    if history.build_interval_hours is not None:
        interval.add_metric([], history.build_interval_hours * 3600)
    yield interval
    yield GaugeMetricFamily(
        f"{PREFIX}_build_timeout_seconds",
        "How long the CLI may take for one build.",
        value=BUILD_TIMEOUT,
    )


class RecordsCollector(Collector):
    """A prometheus-client collector that reads the records afresh on every scrape."""

    def __init__(
        self,
        read: Callable[[], Records],
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(
            datetime.timezone.utc
        ),
    ) -> None:
        self._read = read
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        """Yield the figures of this moment (the registry calls it once per scrape)."""
        yield from families(self._read(), self._clock())
