"""Run the real CLI as a subprocess against the local cloud (host side)."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from lcloud.cloud import LocalCloud

CLI_NAME = "github-runner-image-builder"


def find_cli() -> Path:
    """Return the CLI executable: $GRIB_LOCALCLOUD_CLI, beside this Python, or on PATH."""
    override = os.environ.get("GRIB_LOCALCLOUD_CLI")
    if override:
        return Path(override)
    beside = Path(sys.executable).parent / CLI_NAME
    if beside.exists():
        return beside
    found = shutil.which(CLI_NAME)
    if found is None:
        raise FileNotFoundError(f"{CLI_NAME} is not installed (pip install -e ./app)")
    return Path(found)


def has_command(command: str) -> bool:
    """Return whether the installed CLI offers `command` (it grows while being written)."""
    done = subprocess.run(
        [str(find_cli()), "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    return command in done.stdout


@dataclasses.dataclass(frozen=True)
class Result:
    """What one CLI run printed and returned."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """Return stdout parsed as JSON."""
        return json.loads(self.stdout)

    def errors(self) -> list[str]:
        """Return the stderr lines logged at ERROR level, or usage errors."""
        return [
            line
            for line in self.stderr.splitlines()
            if " ERROR " in line or line.startswith(f"{CLI_NAME}: error")
        ]


def run(
    cloud: LocalCloud,
    *args: str,
    os_cloud: str = LocalCloud.BUILD,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> Result:
    """Run `github-runner-image-builder --os-cloud <os_cloud> ARGS` and wait for it."""
    done = subprocess.run(
        [str(find_cli()), "--os-cloud", os_cloud, *args],
        capture_output=True,
        text=True,
        env={**cloud.cli_env(), **(env or {})},
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def build_args(
    prefix: str,
    images_url: str,
    *extra: str,
    bases: str = "noble",
    upload: tuple[str, ...] = (LocalCloud.RUNNER_A,),
) -> list[str]:
    """Return a `build` command line of the tests' usual shape: x64, a 5 min timeout."""
    return [
        "build", "--prefix", prefix, "--base", bases, "--arch", "x64",
        "--upload-clouds", ",".join(upload), "--cloud-images-url", images_url,
        "--timeout", "5m", *extra,
    ]  # fmt: skip


def start(
    cloud: LocalCloud, *args: str, os_cloud: str = LocalCloud.BUILD
) -> subprocess.Popen[str]:
    """Start the CLI without waiting (for a test that kills it mid-build)."""
    return subprocess.Popen(
        [str(find_cli()), "--os-cloud", os_cloud, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cloud.cli_env(),
    )


def sigkill(process: subprocess.Popen[str]) -> None:
    """Kill the CLI the hard way: no clean-up code of its own can run."""
    process.send_signal(signal.SIGKILL)
    process.communicate()
