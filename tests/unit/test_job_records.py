"""The one reader of a unit's job records: the charm repairs them, the metrics only read."""

import datetime
from pathlib import Path

import pytest

import durable_files
from catalogue import Catalogue, CatalogueImage
from job import RunRecord
from job_records import BuildsNow, JobRecords
from unit_paths import Paths

STARTED = datetime.datetime(2026, 11, 23, 14, 2, tzinfo=datetime.timezone.utc)


@pytest.fixture
def records(tmp_path: Path) -> JobRecords:
    paths = Paths.under(tmp_path, runner=tmp_path / "job_runner.py")
    paths.state_dir.mkdir()
    return JobRecords(paths)


def test_a_read_only_reader_leaves_unreadable_records_where_they_are(records: JobRecords) -> None:
    paths = records.paths
    for path in (paths.current, paths.result, paths.catalogue, paths.handled):
        path.write_bytes(b"\xff{")
    reader = records.read_only()
    assert (reader.current(), reader.result(), reader.load_catalogue()) == (None, None, None)
    assert reader.handled() == ""
    assert sorted(p.name for p in paths.state_dir.iterdir()) == sorted(
        ["current.json", "result.json", "images.json", "handled"]
    )
    # The charm's reader sets them aside (and the status names them for a day).
    assert (records.current(), records.load_catalogue()) == (None, None)
    assert {name.partition(".corrupt-")[0] for name in records.set_aside_recently()} == {
        "current.json",
        "images.json",
    }


def test_the_records_of_a_start_and_its_undo(records: JobRecords) -> None:
    first = RunRecord(run_id="r1", started_at=STARTED, clouds=["a_u_1"])
    assert records.record_start(first) is None
    assert records.result_waiting()  # started, no result taken yet
    before = records.record_start(RunRecord(run_id="r2", started_at=STARTED))
    records.undo_start(before)
    assert records.current() == first
    records.mark_handled("r1")
    assert not records.result_waiting()
    records.queue()
    assert records.now(running=True) == BuildsNow(
        running=True, queued=True, current=first, last_result=None
    )
    records.drop_queued()
    assert not records.queued()


def test_the_catalogue_copy_and_the_fingerprint_round_trip(records: JobRecords) -> None:
    catalogue = Catalogue.of([CatalogueImage(cloud="a_u_1", base="noble", arch="x64", id="i-1")])
    records.save_catalogue(catalogue)
    records.remember_fingerprint("digest\n")
    assert records.read_only().load_catalogue() == catalogue
    assert records.stored_fingerprint() == "digest"


def test_a_running_job_serves_its_clouds_only_while_it_runs() -> None:
    current = RunRecord(run_id="r1", started_at=STARTED, clouds=["a_u_1", "b_u_2"])
    assert BuildsNow(True, False, current, None).serving == ["a_u_1", "b_u_2"]
    assert BuildsNow(False, False, current, None).serving == []
    assert BuildsNow(True, False, None, None).serving == []


def test_write_problems_are_noted_in_order_and_other_errors_pass(tmp_path: Path) -> None:
    problems = durable_files.WriteProblems()
    assert problems.first is None
    for name in ("a", "b"):
        with problems.noted():
            raise durable_files.WriteError(tmp_path / name, OSError(28, "No space left"))
    assert problems.first is not None and problems.first.startswith("cannot write a in ")
    assert len(problems.errors) == 2
    with pytest.raises(ValueError, match="not a write"), problems.noted():
        raise ValueError("not a write")
