"""The launch from a real hook process: the hook's output pipes close while the build runs on."""

import json
import subprocess
import sys
from pathlib import Path

import builder
from charm_helpers import UNIT, Machine, build_running

SRC = Path(__file__).parents[2] / "src"

# A stand-in for a Juju hook: a process whose stdout/stderr are pipes the caller reads to EOF,
# as Juju does; it starts a build and exits.
HOOK = """
import json, sys
from pathlib import Path
sys.path.insert(0, {src!r})
import build_job
import builder
paths = builder.Paths(**{{k: Path(v) for k, v in json.loads({paths!r}).items()}})
b = builder.Builder(paths, {unit!r}, {{}}, apt_install=lambda _: None)
request = build_job.BuildRequest(
    args=("--os-cloud=builder", "build", "--base=noble", "--arch=x64", "--prefix=p",
          "--upload-clouds=c_u"),
    secret_env={{}},
    fingerprint="f",
)
print(json.dumps(b.start(request).__dict__))
"""


def test_hook_returns_and_closes_its_pipes_while_the_build_runs(machine: Machine) -> None:
    machine.plan(build={"wait": True})
    paths = json.dumps({k: str(v) for k, v in machine.paths.__dict__.items()})
    hook = HOOK.format(src=str(SRC), paths=paths, unit=UNIT)
    # The deadline only guards against a hang: a runner holding the pipes would block here.
    done = subprocess.run(
        [sys.executable, "-c", hook], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout)["started"] is True
    machine.wait_for_build_waiting()
    assert build_running(machine.paths)  # the hook is gone; the build holds the lock
    again = builder.Builder(machine.paths, UNIT, {}, apt_install=lambda _: None)
    assert again.state().running
    machine.release()
    machine.wait_for_callbacks(1)
    assert not build_running(machine.paths)
    result = json.loads(machine.paths.result.read_text())
    assert result["run_id"] == json.loads(done.stdout)["run_id"]
    assert result["images"][0]["cloud"] == "c_u"
