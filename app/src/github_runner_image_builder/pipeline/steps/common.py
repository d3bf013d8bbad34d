"""What the steps of one build share: the run, the target, the artefacts handed on.

A step is built with only what it uses and keeps what it creates to itself (its clean-up undoes
only that); what a later step needs of it goes into `Artefacts`, each slot written by one step.
"""

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping

from github_runner_image_builder.cancel import NEVER, Cancellation
from github_runner_image_builder.cloud.poller import Poller
from image_builder_contract import names, platforms, rules
from image_builder_contract.checks import Check
from image_builder_contract.report import Failure, ImageResult

logger = logging.getLogger(__name__)


class StepError(Exception):
    """A build step failed; the message says why."""


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What every build of one run shares: the poller, the cancellation flag, and time."""

    poller: Poller
    cancellation: Cancellation = NEVER
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


@dataclasses.dataclass(frozen=True)
class GuestSecrets:
    """What reaches the builder but never a spec, a report or a log: script secrets, proxy."""

    script_secrets: Mapping[str, str] = dataclasses.field(default_factory=dict)
    proxy: str | None = None  # may carry credentials

    def values(self) -> dict[str, str]:
        """Return what no report may show: the script secrets and the proxy's credentials."""
        found = dict(self.script_secrets)
        if self.proxy:
            parts = rules.proxy_secrets(self.proxy)
            found.update({f"proxy {index}": part for index, part in enumerate(parts)})
        return found


@dataclasses.dataclass(frozen=True)
class Target:
    """One build of a run: its (base, arch), its nonce and the names it gives what it creates."""

    base: platforms.Base
    arch: platforms.Arch
    nonce: str
    prefix: str

    @property
    def label(self) -> str:
        """Return the short name log lines use for this build, e.g. noble-x64."""
        return f"{self.base.codename}-{self.arch.github}"

    @property
    def image_name(self) -> str:
        """Return the name every revision of this image carries."""
        return names.image_name(self.prefix, self.base, self.arch)

    def resource_name(self, kind: str) -> str:
        """Return the name of a temporary server or group (`clean` finds them by kind)."""
        return names.resource_name(self.prefix, kind, self.base, self.arch, self.nonce)


@dataclasses.dataclass
class ServerHandle:
    """A server a step booted; the step that booted it deletes it, another may ask earlier."""

    id: str
    created_at: float  # the poller's clock (`servers.Booted`)
    delete_asked_at: float | None = None  # the poller's clock, once asked for


@dataclasses.dataclass(frozen=True)
class Placement:
    """The flavor and network the builder booted on; the test server boots on the same."""

    flavor_id: str
    network_id: str


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The image made of the stopped builder, with the properties every copy carries."""

    id: str
    properties: dict[str, str]


@dataclasses.dataclass
class Artefacts:
    """What the steps of one build hand on; each slot is written by the step named."""

    base_image_id: str | None = None  # base-image
    base_image_sha256: str = ""  # base-image: the upstream SHA256 the base image carries
    builder_group_id: str | None = None  # security-group
    builder: ServerHandle | None = None  # server
    placement: Placement | None = None  # server
    builder_facts: dict[str, str] = dataclasses.field(default_factory=dict)  # wait
    verify_group_id: str | None = None  # verify-group
    snapshot: Snapshot | None = None  # snapshot; verify adds its properties
    checks: tuple[Check, ...] = ()  # verify
    software: dict[str, str] = dataclasses.field(default_factory=dict)  # verify
    copies: dict[str, str] = dataclasses.field(default_factory=dict)  # copy: cloud → image ID
    images: list[ImageResult] = dataclasses.field(default_factory=list)  # copy
    failures: list[Failure] = dataclasses.field(default_factory=list)  # copy, prune: per cloud


def record_failure(
    artefacts: Artefacts, target: Target, cloud: str, step: names.Step, error: str
) -> None:
    """Record a failure that does not stop the build (one cloud of several)."""
    # The JSON report is for the charm; the log line is for the operator reading stderr.
    logger.error("%s %s failed in %s: %s", target.label, step, cloud, error)
    artefacts.failures.append(
        Failure(target.base.codename, target.arch.github, cloud, step.value, error)
    )
