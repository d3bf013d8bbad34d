"""Durable writes of the unit's state files, shared by the charm and its detached runner.

Standard library only: the runner imports it with the machine's python. A file is replaced
atomically and fsynced (the file, then its folder), so neither a crash nor a power cut can
leave it empty or half written; whatever fails (a full disk included), the temporary file is
removed and the old file stays as it was.
"""

import os
import tempfile
from pathlib import Path


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
