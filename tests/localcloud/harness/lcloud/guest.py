"""The scripted guest: what the test wants a builder VM to do, shared by both sides.

The host writes a list of scripts to `<state>/guests.json`; the Nova test driver reads it when
a server spawns and plays the first script whose `match` prefixes the server's name.
"""

import dataclasses
import json
from pathlib import Path
from typing import Any, Literal

Outcome = Literal["succeed", "fail", "hang", "error"]
# What a server booted from one of our snapshots (the verification's test server) does.
VerifyOutcome = Literal["pass", "fail", "hang", "no-marker"]
GUESTS_FILE = "guests.json"
FAULTS_DIR = "faults"


@dataclasses.dataclass(frozen=True)
class GuestScript:
    """One scripted guest behaviour.

    outcome: `succeed` prints the success marker after `after` seconds and powers off;
    `fail` prints the failure marker for `step` and powers off; `hang` never prints or
    powers off; `error` makes the boot itself fail, so Nova puts the server in ERROR.
    snapshot_fails: the hypervisor fails the snapshot of this server.
    image_size: bytes of guest data in the snapshot (0 = small).
    faults_on_boot: proxy name -> fault mode, switched on when the guest boots, for faults
    that must start in the middle of a build (e.g. {"keystone": "down"}).
    verify: what the test server booted from this build's snapshot does: `pass` reports every
    check the user-data names as passed, with a software report; `fail` fails the checks in
    `verify_failures` (name -> detail); `hang` never powers off; `no-marker` powers off
    without a result. `verify_after`: seconds it takes.
    """

    match: str = ""
    outcome: Outcome = "succeed"
    after: float = 1.0
    step: str = "script"
    snapshot_fails: bool = False
    image_size: int = 0
    faults_on_boot: dict[str, str] = dataclasses.field(default_factory=dict)
    verify: VerifyOutcome = "pass"
    verify_failures: dict[str, str] = dataclasses.field(default_factory=dict)
    verify_after: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GuestScript":
        """Build from the JSON form."""
        return cls(**data)


def write_scripts(state_dir: Path, scripts: list[GuestScript]) -> None:
    """Replace the scripted guests (atomically: the driver may be reading)."""
    target = state_dir / GUESTS_FILE
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps([s.to_dict() for s in scripts]))
    tmp.replace(target)


def script_for(state_dir: Path, server_name: str) -> GuestScript:
    """Return the script for a server: the first whose `match` prefixes its name."""
    try:
        scripts = json.loads((state_dir / GUESTS_FILE).read_text())
    except FileNotFoundError:
        scripts = []
    for data in scripts:
        script = GuestScript.from_dict(data)
        if server_name.startswith(script.match):
            return script
    return GuestScript()


def set_fault(state_dir: Path, proxy: str, mode: str | None) -> None:
    """Switch a proxy's fault on (`mode`) or off (None); proxies read it per connection."""
    path = state_dir / FAULTS_DIR / proxy
    path.parent.mkdir(exist_ok=True)
    if mode is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(mode)


def fault(state_dir: Path, proxy: str) -> str | None:
    """Return a proxy's current fault mode, or None."""
    try:
        return (state_dir / FAULTS_DIR / proxy).read_text().strip() or None
    except FileNotFoundError:
        return None
