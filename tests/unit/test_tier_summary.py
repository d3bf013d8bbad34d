"""The closing line of `./dev test` sums every tier and never reads a broken tier as green."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "tier_summary.py"


def junit(path: Path, tests: int, failures: int = 0, errors: int = 0, skipped: int = 0) -> None:
    """Write a report shaped like pytest's."""
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
        f'<testsuite name="pytest" errors="{errors}" failures="{failures}" '
        f'skipped="{skipped}" tests="{tests}" time="1.0"></testsuite></testsuites>'
    )


def summary(results: Path, *codes: str) -> subprocess.CompletedProcess[str]:
    """Run the summariser as `./dev test` does."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(results), *codes],
        capture_output=True,
        text=True,
        check=False,
    )


def test_sums_every_tier_into_the_last_line(tmp_path: Path) -> None:
    junit(tmp_path / "unit.xml", tests=10, skipped=2)
    junit(tmp_path / "localcloud.xml", tests=5)
    junit(tmp_path / "integration.xml", tests=1, skipped=1)
    done = summary(tmp_path, "lint=0", "unit=0", "localcloud=0", "integration=0")
    assert done.returncode == 0
    assert (
        done.stdout.splitlines()[-1] == "14 passed, 0 failed, 3 skipped"
    )  # lint counts as one check


def test_failures_and_errors_count_and_fail_the_run(tmp_path: Path) -> None:
    junit(tmp_path / "unit.xml", tests=10, failures=1, errors=1)
    done = summary(tmp_path, "lint=0", "unit=1")
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == "9 passed, 2 failed, 0 skipped"


@pytest.mark.parametrize(
    ("codes", "last"),
    [
        (["lint=1"], "0 passed, 1 failed, 0 skipped"),
        (["unit=4"], "0 passed, 1 failed, 0 skipped"),
    ],
)
def test_a_tier_that_fails_without_a_failing_test_adds_a_failure(
    tmp_path: Path, codes: list[str], last: str
) -> None:
    done = summary(tmp_path, *codes)
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == last


def test_a_crashed_tier_with_a_green_report_still_fails(tmp_path: Path) -> None:
    junit(tmp_path / "localcloud.xml", tests=3)
    done = summary(tmp_path, "localcloud=1")
    assert done.stdout.splitlines()[-1] == "3 passed, 1 failed, 0 skipped"
    assert done.returncode == 1


def test_an_unreadable_report_is_a_failure(tmp_path: Path) -> None:
    (tmp_path / "unit.xml").write_text("<testsuites")
    done = summary(tmp_path, "unit=0")
    assert done.stdout.splitlines()[-1] == "0 passed, 1 failed, 0 skipped"
