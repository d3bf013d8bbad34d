"""The CLI's answer on stdout (`build`, `copy`): one schema, written by the CLI, read by the charm.

Pydantic dataclasses, so the CLI builds them positionally and the charm validates what it reads
with the same types. Text read from a JSON document is bounded to one line (the whole error is
in the CLI's log and its own report); an image whose ID is not a safe word is not taken: it becomes
a failure of its cloud (`text.check_image_id`).
"""

import dataclasses
from typing import Annotated, Any

import pydantic
from pydantic.dataclasses import dataclass

from image_builder_contract import text
from image_builder_contract.checks import Check
from image_builder_contract.names import Phase

# An image ID a cloud answered: checked before it is stored, published or protected.
ImageId = Annotated[str, pydantic.AfterValidator(text.check_image_id)]


def _bounded(limit: int) -> pydantic.AfterValidator:
    """Bound text read from a JSON document to one line; the CLI's own values stay whole."""

    def bound(value: str, info: pydantic.ValidationInfo) -> str:
        return text.one_line(value, limit) if info.mode == "json" else value

    return pydantic.AfterValidator(bound)


# Text a cloud or the CLI wrote (an error body may be megabytes): one line, bounded, once read.
ResultText = Annotated[str, _bounded(text.RESULT_LIMIT)]
Word = Annotated[str, _bounded(200)]
# The step name a failure of the answer itself carries (an unsafe image ID).
RESULT_STEP = "result"


@dataclass(frozen=True)
class ImageResult:
    """One image built (or copied) and available in one cloud."""

    name: Word
    base: Word  # codename
    arch: Word  # GitHub's word: x64, arm64 …
    cloud: Word
    id: ImageId
    software: dict[str, str] = dataclasses.field(default_factory=dict)  # name → version
    checks: tuple[Check, ...] = ()  # every verification check, passed


@dataclass(frozen=True)
class Failure:
    """One thing that went wrong: which build, in which cloud, at which step, and why."""

    base: Word
    arch: Word
    cloud: Word = ""
    step: Word = ""
    error: ResultText = ""
    checks: tuple[Check, ...] = ()  # a failed verification: every check and how it went
    phase: Phase = Phase.RUN

    @property
    def where(self) -> str:
        """Return the step, and "cleanup" after it when its clean-up failed: `server cleanup`."""
        return f"{self.step} {Phase.CLEANUP}" if self.phase == Phase.CLEANUP else self.step


@dataclass(frozen=True)
class Timing:
    """How long each step of one build took, in seconds: for operators and the benchmark."""

    base: str
    arch: str
    steps: dict[str, float] = dataclasses.field(default_factory=dict)  # in the order they ran
    cleanup: float = 0.0  # every cleanup together
    total: float = 0.0

    @pydantic.field_serializer("steps")
    def _round_steps(self, steps: dict[str, float]) -> dict[str, float]:
        return {step: round(seconds, 2) for step, seconds in steps.items()}

    @pydantic.field_serializer("cleanup", "total")
    def _round(self, seconds: float) -> float:
        return round(seconds, 2)


@dataclass
class Report:
    """Everything one `build` or `copy` run produced; exit code 0 only when nothing failed.

    Keys a newer CLI adds are ignored by an older reader.
    """

    images: list[ImageResult] = dataclasses.field(default_factory=list)
    failures: list[Failure] = dataclasses.field(default_factory=list)
    timings: list[Timing] = dataclasses.field(default_factory=list)
    poll_calls: int = 0  # the run's list calls for every wait of every build together

    @pydantic.model_validator(mode="before")
    @classmethod
    def _refuse_unsafe_ids(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            return data
        kept, refused = [], []
        for image in data["images"]:
            image_id = str(image.get("id", "")) if isinstance(image, dict) else ""
            if isinstance(image, dict) and not text.is_image_id(image_id):
                refused.append(
                    {
                        **{k: str(image.get(k, "")) for k in ("base", "arch", "cloud")},
                        "step": RESULT_STEP,
                        "error": text.one_line(
                            f"the cloud answered an unsafe image ID {image_id!r}", 200
                        ),
                    }
                )
            else:
                kept.append(image)
        failures = data.get("failures")
        return {**data, "images": kept, "failures": [*(failures or []), *refused]}

    @property
    def exit_code(self) -> int:
        """0 when every build and copy succeeded, else 1."""
        return 1 if self.failures else 0

    def to_json(self) -> str:
        """Return the JSON document printed on stdout."""
        return _ADAPTER.dump_json(self, indent=2).decode()

    @classmethod
    def from_json(cls, document: str | bytes) -> "Report":
        """Return the report in a CLI's stdout; raise pydantic.ValidationError when it is none."""
        return _ADAPTER.validate_json(document)


_ADAPTER = pydantic.TypeAdapter(Report)
