"""The `build` command's result: what stdout carries as one JSON document."""

import dataclasses
import json

from github_runner_image_builder.guest.marker import Check


@dataclasses.dataclass(frozen=True)
class ImageResult:
    """One image built and available in one cloud."""

    name: str
    base: str  # codename
    arch: str  # GitHub's word: x64, arm64 …
    cloud: str
    id: str
    software: dict[str, str] = dataclasses.field(default_factory=dict)  # name → version
    checks: tuple[Check, ...] = ()  # every verification check, passed


@dataclasses.dataclass(frozen=True)
class Failure:
    """One thing that went wrong: which build, in which cloud, at which step, and why."""

    base: str
    arch: str
    cloud: str
    step: str
    error: str
    checks: tuple[Check, ...] = ()  # a failed verification: every check and how it went


@dataclasses.dataclass(frozen=True)
class Timing:
    """How long each step of one build took, in seconds: for operators and the benchmark."""

    base: str
    arch: str
    steps: dict[str, float]  # step → seconds, in the order they ran
    cleanup: float  # every cleanup together
    total: float


@dataclasses.dataclass
class Report:
    """Everything one `build` run produced; exit code 0 only when nothing failed."""

    images: list[ImageResult] = dataclasses.field(default_factory=list)
    failures: list[Failure] = dataclasses.field(default_factory=list)
    timings: list[Timing] = dataclasses.field(default_factory=list)
    poll_calls: int = 0  # the run's list calls for every wait of every build together

    @property
    def exit_code(self) -> int:
        """0 when every build and copy succeeded, else 1."""
        return 1 if self.failures else 0

    def to_json(self) -> str:
        """Return the JSON document printed on stdout."""
        return json.dumps(
            {
                "images": [dataclasses.asdict(i) for i in self.images],
                "failures": [dataclasses.asdict(f) for f in self.failures],
                "timings": [
                    {
                        **dataclasses.asdict(t),
                        "steps": {k: round(v, 2) for k, v in t.steps.items()},
                        "cleanup": round(t.cleanup, 2),
                        "total": round(t.total, 2),
                    }
                    for t in self.timings
                ],
                "poll_calls": self.poll_calls,
            },
            indent=2,
        )
