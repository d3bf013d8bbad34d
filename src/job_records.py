"""The unit's build records: the one reader of what its jobs leave in the state folder.

current.json (the last started job), result.json (its result, written by the runner), the
handled marker, the queued flag, the fingerprint of the last build's settings, this unit's copy
of the catalogue, and the files set aside as unreadable. The charm reads them repairing (an
unreadable file is set aside: src/durable_files.py) and writes its own; the metrics read them
through `read_only()`, which never moves or writes a file.
"""

import dataclasses
import datetime
from pathlib import Path
from typing import TypeVar

import pydantic

import durable_files
from catalogue import Catalogue
from job import BuildResult, RunRecord
from unit_paths import Paths

_Model = TypeVar("_Model", bound=pydantic.BaseModel)


@dataclasses.dataclass(frozen=True)
class BuildsNow:
    """A snapshot of the unit's builds: whether one runs, one waits, and the last two records."""

    running: bool
    queued: bool
    current: RunRecord | None
    last_result: BuildResult | None

    @property
    def serving(self) -> list[str]:
        """Return the clouds the running job serves ([] when none runs)."""
        return self.current.clouds if self.running and self.current else []


class JobRecords:
    """Reads (and, for the charm, writes) one unit's job records."""

    def __init__(self, paths: Paths, repair: bool = True) -> None:
        self.paths = paths
        self.repair = repair  # False: never move or write a file (the metrics exporter)

    def read_only(self) -> "JobRecords":
        """Return a reader of the same records that never moves or writes a file."""
        return JobRecords(self.paths, repair=False)

    def _model(self, path: Path, model: type[_Model]) -> _Model | None:
        if self.repair:
            return durable_files.read_model(path, model)
        return durable_files.peek_model(path, model)

    def _text(self, path: Path) -> str | None:
        if self.repair:
            return durable_files.read_text(path)
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    # --- the last job --------------------------------------------------------------------

    def current(self) -> RunRecord | None:
        """Return the record of the last started job."""
        return self._model(self.paths.current, RunRecord)

    def result(self) -> BuildResult | None:
        """Return the last finished job's result."""
        return self._model(self.paths.result, BuildResult)

    def queued(self) -> bool:
        """Return whether a rebuild waits for the running job."""
        return self.paths.queued.exists()

    def now(self, running: bool) -> BuildsNow:
        """Return the unit's builds now; `running` is the lock's answer (src/job_launcher.py)."""
        return BuildsNow(
            running=running,
            queued=self.queued(),
            current=self.current(),
            last_result=self.result(),
        )

    def handled(self) -> str:
        """Return the run id of the last result the charm has published ('' before one)."""
        return (self._text(self.paths.handled) or "").strip()

    def result_waiting(self) -> bool:
        """Return whether the last started job ended and its result is not taken yet."""
        current = self.current()
        return current is not None and self.handled() != current.run_id

    def finished(self, run_id: str) -> bool:
        """Return whether the job of `run_id` has written its result."""
        result = self.result()
        return result is not None and result.run_id == run_id

    def queue(self) -> None:
        """Ask for one more build after the running one (any number of asks coalesce)."""
        self.paths.queued.touch(mode=0o600)

    def drop_queued(self) -> None:
        """Forget a queued rebuild (a build starts now, or this unit no longer builds)."""
        self.paths.queued.unlink(missing_ok=True)

    def record_start(self, run: RunRecord) -> str | None:
        """Record a job as the last started one; return the record it replaced (its text).

        Raises durable_files.WriteError (nothing changed) when it cannot be written.
        """
        before = durable_files.read_text(self.paths.current)
        durable_files.write(self.paths.current, run.model_dump_json())
        return before

    def undo_start(self, before: str | None) -> None:
        """Put back the record `record_start` replaced: a launch that failed is no last job."""
        if before is None:
            self.paths.current.unlink(missing_ok=True)
        else:
            durable_files.write(self.paths.current, before)

    def keep_result(self, result: BuildResult) -> None:
        """Record a result the charm wrote itself (a job that ended without one)."""
        durable_files.keep(self.paths.result, result.model_dump_json())

    def mark_handled(self, run_id: str) -> None:
        """Record that the result of `run_id` is published (a failure is only logged).

        Unwritten (disk full), the result is only taken again: publishing it twice is harmless.
        """
        durable_files.keep(self.paths.handled, run_id)

    # --- what the unit keeps between jobs ------------------------------------------------

    def stored_fingerprint(self) -> str:
        """Return the config digest of the last started build ('' before the first)."""
        return (self._text(self.paths.fingerprint) or "").strip()

    def remember_fingerprint(self, fingerprint: str) -> None:
        """Record the digest the last build stands for (an upgrade carries the old one over)."""
        durable_files.keep(self.paths.fingerprint, fingerprint)

    def set_aside_recently(self) -> list[str]:
        """Return the files set aside as unreadable within the last day, newest first."""
        now = datetime.datetime.now(datetime.timezone.utc)
        return durable_files.set_aside_recently(self.paths.state_dir, now)

    def load_catalogue(self) -> Catalogue | None:
        """Return this unit's copy of the catalogue; None when there is none or it is unreadable.

        An unreadable copy (empty, truncated, wrong shape, not UTF-8) is set aside, unless this
        reader is read-only.
        """
        text = self._text(self.paths.catalogue)
        if text is None:
            return None
        try:
            return Catalogue.from_json(text)
        except ValueError as error:  # pydantic.ValidationError is a ValueError too
            if self.repair:
                durable_files.set_aside(self.paths.catalogue, error)
            return None

    def save_catalogue(self, catalogue: Catalogue) -> None:
        """Keep this unit's copy of the catalogue (the peer relation holds the shared one).

        Raises durable_files.WriteError (the old copy kept) when it cannot be written.
        """
        durable_files.write(self.paths.catalogue, catalogue.model_dump_json(indent=1))
