"""Durable files: writes that survive a crash or a power cut, and reads that never break a hook.

Writes replace a file atomically and fsync it (the file, then its folder), so neither a crash
nor a power cut can leave it empty or half written; whatever fails (a full disk included), the
temporary file is removed and the old file stays as it was. A file that cannot be read (empty,
cut, wrong shape, not UTF-8, a folder) is moved aside as `<name>.corrupt-<UTC time>`, logged,
and read as missing; `peek_model` only reads (the metrics never move a file). The runner
(src/job_runner.py) imports it too: standard library and pydantic only.
"""

import contextlib
import datetime
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pydantic

logger = logging.getLogger(__name__)
_Model = TypeVar("_Model", bound=pydantic.BaseModel)

SET_ASIDE = ".corrupt-"  # <name>.corrupt-<UTC time>: a state file that could not be read
SET_ASIDE_TIME = "%Y%m%dT%H%M%S%fZ"
SET_ASIDE_SHOWN = datetime.timedelta(days=1)  # the status mentions a set-aside file this long


class WriteError(Exception):
    """A state file could not be written (disk full, read-only); the previous one is kept."""

    def __init__(self, path: Path, error: OSError) -> None:
        self.path = path
        reason = os.strerror(error.errno) if error.errno else str(error)
        super().__init__(
            f"cannot write {path.name} in {path.parent}: {reason}; the previous file is kept "
            "and no build starts until it can be written (free space on the unit's disk)"
        )


class WriteProblems:
    """The files one hook could not write (each logged; the old ones kept), first one first."""

    def __init__(self) -> None:
        self.errors: list[WriteError] = []

    def note(self, error: WriteError) -> None:
        """Log a write that failed and remember it."""
        logger.error("%s", error)
        self.errors.append(error)

    @contextlib.contextmanager
    def noted(self) -> Iterator[None]:
        """Run a write; a WriteError is noted instead of raised."""
        try:
            yield
        except WriteError as error:
            self.note(error)

    @property
    def first(self) -> str | None:
        """Return what went wrong first, None when every write succeeded."""
        return str(self.errors[0]) if self.errors else None


def write_all(fd: int, data: bytes) -> None:
    """Write every byte (os.write may write fewer than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in `folder` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_with(fd: int, tmp: Path, path: Path, data: bytes) -> None:
    """Write `data` into the open temporary file `tmp` (from offset 0), then move it over `path`.

    The descriptor is closed; on failure `tmp` is removed and the error raised.
    """
    try:
        try:
            write_all(fd, data)
            os.ftruncate(fd, len(data))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_atomic(path: Path, text: str | bytes, mode: int = 0o600) -> None:
    """Replace `path` with `text`: readers see the old or the new file, never a part.

    The mode is set before any byte is written.
    """
    data = text.encode() if isinstance(text, str) else text
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    replace_with(fd, Path(tmp), path, data)


def write(path: Path, text: str, mode: int = 0o600) -> None:
    """Write a file durably; the old one stays whole when that fails (WriteError)."""
    try:
        write_atomic(path, text, mode)
    except OSError as error:
        raise WriteError(path, error) from error


def keep(path: Path, text: str) -> None:
    """Write a file whose loss costs little (a record, a marker); a failure is only logged."""
    try:
        write(path, text)
    except WriteError as error:
        logger.error("%s", error)


def set_aside(path: Path, reason: object) -> Path | None:
    """Move an unreadable state file out of the way, so the unit goes on without it."""
    target = path.with_name(
        f"{path.name}{SET_ASIDE}{datetime.datetime.now(datetime.timezone.utc).strftime(SET_ASIDE_TIME)}"
    )
    try:
        path.rename(target)
    except OSError as error:
        logger.error(
            "state file %s is unreadable (%s) and cannot be moved: %s", path, reason, error
        )
        return None
    logger.error("state file %s was unreadable (%s): moved aside to %s", path, reason, target.name)
    return target


def read_text(path: Path) -> str | None:
    """Return a state file's text; None when it is missing or unreadable (then set aside)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        set_aside(path, error)
        return None


def read_model(path: Path, model: type[_Model]) -> _Model | None:
    """Return a state file as its model; None when missing or unreadable (then set aside)."""
    text = read_text(path)
    if text is None:
        return None
    try:
        return model.model_validate_json(text)
    except pydantic.ValidationError as error:
        set_aside(path, f"not a {model.__name__}: {error.error_count()} errors")
        return None


def peek_model(path: Path, model: type[_Model]) -> _Model | None:
    """Return a file as its model, never moving it: None when missing or unreadable (logged).

    For readers that must not write (the metrics exporter runs on a read-only view).
    """
    try:
        return model.model_validate_json(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:  # ValidationError and UnicodeDecodeError are too
        logger.warning("ignoring unreadable %s: %s", path.name, error)
        return None


def set_aside_recently(folder: Path, now: datetime.datetime) -> list[str]:
    """Return the files of `folder` set aside within SET_ASIDE_SHOWN of `now`, newest first."""
    found = []
    for path in folder.glob(f"*{SET_ASIDE}*"):
        stamp = path.name.rpartition(SET_ASIDE)[2]
        try:
            when = datetime.datetime.strptime(stamp, SET_ASIDE_TIME)
        except ValueError:
            continue
        if now - when.replace(tzinfo=datetime.timezone.utc) < SET_ASIDE_SHOWN:
            found.append(path.name)
    return sorted(found, key=lambda name: name.rpartition(SET_ASIDE)[2], reverse=True)
