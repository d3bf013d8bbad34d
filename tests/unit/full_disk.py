"""A full disk, injected: writes into a folder fail with ENOSPC once the disk is "full".

No small filesystem can be mounted here, so the test patches the writes instead. The model is
a disk with no free block left: a write that would make a file longer than the space already
allocated to it fails with ENOSPC, and a write into allocated space (a file preallocated with
posix_fallocate before the disk filled) still succeeds. The disk is full while the flag file
exists, so a subprocess (the fake CLI) can fill it mid-build.

`os.fdopen` of such a file is routed through `os.write` as well, so code that writes through a
Python file object meets the same full disk.
"""

import errno
import os
from pathlib import Path
from typing import Any

import pytest


class FullDisk:
    """The injected disk of one folder."""

    def __init__(self, folder: Path, flag: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = folder
        self.flag = flag
        self.refused: list[str] = []  # the files a write was refused to
        real_write, real_fdopen = os.write, os.fdopen

        def write(fd: int, data: Any) -> int:
            name = self._name(fd)
            if name is not None and self.full:
                end = os.lseek(fd, 0, os.SEEK_CUR) + len(data)
                if end > os.fstat(fd).st_size:
                    self.refused.append(Path(name).name)
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)

        def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if self._name(fd) is not None and "w" in mode:
                return _Writer(fd, write)
            return real_fdopen(fd, mode, *args, **kwargs)

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "fdopen", fdopen)

    @property
    def full(self) -> bool:
        """Return whether the disk is full now."""
        return self.flag.exists()

    def fill(self) -> None:
        """Use up the last free block."""
        self.flag.touch()

    def _name(self, fd: int) -> str | None:
        try:
            name = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        return name if name.startswith(f"{self.folder}/") else None


class _Writer:
    """A minimal writable file object over a descriptor, writing through the injected os.write."""

    def __init__(self, fd: int, write: Any) -> None:
        self._fd, self._write = fd, write

    def write(self, text: str | bytes) -> int:
        data = text.encode() if isinstance(text, str) else text
        view = memoryview(data)
        while view:
            view = view[self._write(self._fd, view) :]
        return len(text)

    def __enter__(self) -> "_Writer":
        return self

    def __exit__(self, *_: object) -> None:
        os.close(self._fd)


def stray_files(folder: Path, keep: set[str]) -> list[str]:
    """Return the files of a folder other than `keep` (temporary or partial files)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)
