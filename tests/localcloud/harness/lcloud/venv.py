"""The services' own virtual environment: pinned OpenStack from PyPI, cached outside the repo.

Installed once per set of pins into ~/.cache/github-runner-image-builder/localcloud-<hash>
(override the parent directory with GRIB_LOCALCLOUD_CACHE) and reused while the pins, the
constraints and our ML2 driver are unchanged. A file lock keeps two runs from installing at once.
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[2]  # tests/localcloud
SERVICES = (
    "keystone==30.0.0",
    "glance==33.0.0",
    "nova==34.0.0",
    "openstack-placement==16.0.0",
    "neutron==29.0.0",
    "waitress==3.0.2",
)
CONSTRAINTS = HERE / "services-constraints.txt"
ML2_DRIVER = HERE / "ml2_bind"
_STAMP = ".complete"


class InstallError(RuntimeError):
    """The services could not be installed (e.g. PyPI unreachable); the message says why."""


def _fingerprint() -> str:
    digest = hashlib.sha256()
    digest.update(sys.version.encode())
    digest.update("\n".join(SERVICES).encode())
    digest.update(CONSTRAINTS.read_bytes())
    for path in sorted(ML2_DRIVER.glob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def cache_root() -> Path:
    """Return the directory that holds the cached venvs."""
    default = Path.home() / ".cache" / "github-runner-image-builder"
    return Path(os.environ.get("GRIB_LOCALCLOUD_CACHE", default))


def ensure() -> tuple[Path, float]:
    """Return (the venv's python, seconds spent installing: 0 when it was cached)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / f"localcloud-{_fingerprint()}"
    python = venv / "bin" / "python"
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / _STAMP).exists():
            return python, 0.0
        started = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)  # a half-made one from an interrupted run
        log = root / f"{venv.name}.install.log"
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
            [
                str(python), "-m", "pip", "install", "--quiet", "-c", str(CONSTRAINTS),
                *SERVICES, str(ML2_DRIVER),
            ],
        ]  # fmt: skip
        with log.open("w") as out:
            for step in steps:
                done = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, check=False)
                if done.returncode:
                    tail = log.read_text()[-2000:]
                    raise InstallError(
                        f"installing the local cloud's services failed ({' '.join(step[:4])}…);"
                        f" full log in {log}:\n{tail}"
                    )
        (venv / _STAMP).write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        return python, time.monotonic() - started
