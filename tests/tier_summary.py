"""Sum every test tier's results into one closing line: `N passed, N failed, N skipped`.

CI reads only the last line of `./dev test` to learn whether tests ran, and the last tier
(integration) skips without a controller, so pytest's own closing line would say "1 skipped".
Each pytest tier writes a JUnit XML report; a tier without one (lint) counts as one check.
A tier that exited non-zero without any failing test (a crash, a collection error, a lint
error) adds one failure, so a broken tier can never read as green.

Usage: python3 tests/tier_summary.py RESULTS_DIR TIER=EXIT_CODE ...
Prints the line and exits 1 when anything failed. Standard library only: it runs before any
virtual environment exists.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Counts:
    """Outcomes of one tier (or of all of them)."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.passed + other.passed,
            self.failed + other.failed,
            self.skipped + other.skipped,
        )

    def line(self) -> str:
        """The closing line CI reads."""
        return f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"


def junit_counts(report: Path) -> Counts:
    """Counts from a pytest JUnit XML report (errors count as failures)."""
    # Our own pytest wrote it moments ago: not untrusted input.
    root = ET.parse(report).getroot()  # noqa: S314
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = Counts()
    for suite in suites:
        tests = int(suite.get("tests", 0))
        failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped = int(suite.get("skipped", 0))
        total += Counts(max(tests - failed - skipped, 0), failed, skipped)
    return total


def tier_counts(results: Path, tier: str, exit_code: int) -> Counts:
    """One tier's outcomes, from its report when it wrote one, else its exit code."""
    report = results / f"{tier}.xml"
    counts = Counts()
    if report.is_file():
        try:
            counts = junit_counts(report)
        except (ET.ParseError, ValueError):
            return Counts(failed=1)
    elif exit_code == 0:
        return Counts(passed=1)
    if exit_code != 0 and counts.failed == 0:
        counts += Counts(failed=1)
    return counts


def main(argv: list[str]) -> int:
    """Print the summed line; exit 1 when any tier failed."""
    if len(argv) < 2:
        print("usage: tier_summary.py RESULTS_DIR TIER=EXIT_CODE ...", file=sys.stderr)
        return 2
    results = Path(argv[0])
    total = Counts()
    for arg in argv[1:]:
        tier, _, code = arg.partition("=")
        counts = tier_counts(results, tier, int(code or 1))
        print(f"tier {tier}: {counts.line()}")
        total += counts
    print(total.line())
    return 1 if total.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
