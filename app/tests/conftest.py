"""Makes `app.tests.fakes` importable (pytest runs with --import-mode=importlib); fixtures."""

import hashlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


from app.tests.fakes import qcow2  # noqa: E402 - importable only once the root is on the path


@pytest.fixture
def mirror(tmp_path: Path) -> str:
    for base in ("noble", "jammy"):
        directory = tmp_path / base / "current"
        directory.mkdir(parents=True)
        sums = []
        for arch in ("amd64", "arm64"):
            data = qcow2(2000) + f"{base}-{arch}".encode()
            (directory / f"{base}-server-cloudimg-{arch}.img").write_bytes(data)
            sums.append(f"{hashlib.sha256(data).hexdigest()} *{base}-server-cloudimg-{arch}.img")
        (directory / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return tmp_path.as_uri()


@pytest.fixture(autouse=True)
def _close_cli_log_handlers() -> Iterator[None]:
    """Close the log handlers a test's `cli.main` installed (a real CLI exits instead).

    `logs.configure` replaces the root logger's handlers without closing them, so a --log-file
    left open by one test would be reported as an unclosed file (an error) in a later one.
    """
    root = logging.getLogger()
    before = set(root.handlers)
    yield
    for handler in set(root.handlers) - before:
        root.removeHandler(handler)
        handler.close()
