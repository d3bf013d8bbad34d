"""The scripted guest: what the test wants a builder VM to do, shared by both sides.

The host writes a list of scripts to `<state>/guests.json`; the Nova test driver reads it when
a server spawns and plays the first script whose `match` prefixes the server's name.
"""

import dataclasses
import json
import shutil
import threading
from pathlib import Path
from typing import Any, Literal

Outcome = Literal["succeed", "fail", "hang", "error"]
# What a server booted from one of our snapshots (the verification's test server) does.
VerifyOutcome = Literal["pass", "fail", "hang", "no-marker"]
GUESTS_FILE = "guests.json"
FAULTS_DIR = "faults"
BOOTS_DIR = "boots"


@dataclasses.dataclass(frozen=True)
class GuestScript:
    """One scripted guest behaviour.

    outcome: `succeed` prints the success marker after `after` seconds and powers off;
    `fail` prints the failure marker for `step` and powers off; `hang` never prints or
    powers off; `error` makes the boot itself fail, so Nova puts the server in ERROR.
    snapshot_fails: the hypervisor fails the snapshot of this server.
    image_size: bytes of guest data in the snapshot (0 = small).
    no_valid_host: how many boots of matching servers fail as if the scheduler had found no
    host (ERROR with "No valid host was found"), before boots succeed again.
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
    no_valid_host: int = 0
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
    shutil.rmtree(state_dir / BOOTS_DIR, ignore_errors=True)
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


_taking = threading.Lock()


def set_fault(state_dir: Path, proxy: str, mode: str | None) -> None:
    """Switch a proxy's fault on (`mode`) or off (None); proxies read it per connection.

    `mode` may end in a count, e.g. "503 2": only the next 2 connections get the fault.
    """
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


def take_fault(state_dir: Path, proxy: str) -> str | None:
    """Return the fault for one new connection, counting down a counted fault ("503 2")."""
    with _taking:
        current = fault(state_dir, proxy)
        if current is None:
            return None
        mode, _, count = current.partition(" ")
        if count.isdigit():
            left = int(count) - 1
            set_fault(state_dir, proxy, f"{mode} {left}" if left > 0 else None)
        return mode


def count_boot(state_dir: Path, match: str) -> int:
    """Count one boot of a server of the script `match`; return the boots counted before it.

    The Nova driver's side, in `<state>/boots/`; new scripts (write_scripts) start from 0.
    """
    with _taking:
        path = state_dir / BOOTS_DIR / (match or "-")
        path.parent.mkdir(exist_ok=True)
        done = int(path.read_text()) if path.exists() else 0
        path.write_text(str(done + 1))
        return done
