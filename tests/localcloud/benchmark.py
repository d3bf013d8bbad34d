"""Benchmark (not a test): the real CLI's build matrix on the local cloud, with a fixed guest time.

    ./dev -e localcloud -- --co -q >/dev/null   # once, to create .tox/localcloud
    PYTHONPATH=tests/localcloud/harness .tox/localcloud/bin/python tests/localcloud/benchmark.py

For 1, 2 and 4 bases, each with 1 to 3 upload clouds, it prints: wall time divided by the
simulated guest time; the median time between a guest powering off and the CLI asking for its
snapshot (the CLI noticing SHUTOFF, plus one API call); the CLI's API calls per build (every
keystoneauth request, counted inside the CLI process); the median wall time of the verify step
(boot a test server from the snapshot, wait for its result; from the CLI's own step log); and,
separately, the CLI's peak RSS while copying a 1 GiB image to three clouds.
Options: --guest-seconds (default 10), --skip-big, --skip-matrix.
"""

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lcloud import cli, guest, mirror
from lcloud.cloud import LocalCloud

BASES = ("noble", "jammy", "focal", "resolute")
PREFIX = "bench"
GIB = 1 << 30

# Loaded by every Python the CLI starts (PYTHONPATH): counts API calls, records peak RSS.
_SITECUSTOMIZE = """
import atexit, json, os, resource, threading
_calls = [0]
_lock = threading.Lock()
try:
    from keystoneauth1 import session as _session
    _request = _session.Session.request
    def _counted(self, *args, **kwargs):
        with _lock:
            _calls[0] += 1
        return _request(self, *args, **kwargs)
    _session.Session.request = _counted
except ImportError:
    pass
@atexit.register
def _report():
    with open(os.environ["GRIB_BENCH_OUT"], "w") as out:
        json.dump({"calls": _calls[0],
                   "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, out)
"""


def _run_build(
    cloud: LocalCloud, url: str, bases: tuple[str, ...], uploads: tuple[str, ...], probe: Path
) -> tuple[float, dict[str, Any], cli.Result]:
    out = probe / "out.json"
    env = {
        "PYTHONPATH": f"{probe}:{cloud.cli_env().get('PYTHONPATH', '')}",
        "GRIB_BENCH_OUT": str(out),
    }
    began = time.monotonic()
    result = cli.run(
        cloud, "build", "--prefix", PREFIX, "--base", ",".join(bases), "--arch", "x64",
        "--upload-clouds", ",".join(uploads), "--cloud-images-url", url, "--timeout", "10m",
        env=env,
    )  # fmt: skip
    wall = time.monotonic() - began
    if result.code:
        raise RuntimeError(f"build failed:\n{result.stdout}\n{result.stderr}")
    return wall, json.loads(out.read_text()), result


def _notice_delays(cloud: LocalCloud, since: float) -> list[float]:
    """Seconds from each guest's power-off to the snapshot request for that server."""
    events = [e for e in cloud.events() if e["time"] >= since]
    off = {e["server_id"]: e["time"] for e in events if e["event"] == "poweroff"}
    snap = {e["server_id"]: e["time"] for e in events if e["event"] == "snapshot"}
    return [snap[s] - off[s] for s in off if s in snap]


def _step_seconds(stderr: str, step: str) -> list[float]:
    """Seconds each build's `step` took, from the CLI's `<label> <step>: done in N s` lines."""
    return [
        float(m) for m in re.findall(rf" {re.escape(step)}: done in ([0-9.]+) s$", stderr, re.M)
    ]


def main() -> int:
    """Run the matrix and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guest-seconds", type=float, default=10.0)
    parser.add_argument("--skip-big", action="store_true", help="skip the 1 GiB copy")
    parser.add_argument("--skip-matrix", action="store_true", help="only the 1 GiB copy")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with (
        LocalCloud.start() as cloud,
        tempfile.TemporaryDirectory() as tmp,
        mirror.serve(Path(tmp) / "images") as images,
    ):
        print(f"cloud up: {json.dumps(cloud.describe()['timings'])}", flush=True)
        probe = Path(tmp) / "probe"
        probe.mkdir()
        (probe / "sitecustomize.py").write_text(_SITECUSTOMIZE)
        for codename in BASES:
            images.publish(codename, "amd64")
        init = cli.run(
            cloud, "init", "--prefix", PREFIX, "--base", ",".join(BASES), "--arch", "x64",
            "--cloud-images-url", images.url,
        )  # fmt: skip
        if init.code:
            print(init.stderr, file=sys.stderr)
            return 1
        cloud.guests([guest.GuestScript(match=PREFIX, after=args.guest_seconds)])
        for n_bases in () if args.skip_matrix else (1, 2, 4):
            for n_uploads in (1, 2, 3):
                since = time.time()
                wall, probe_out, result = _run_build(
                    cloud, images.url, BASES[:n_bases], LocalCloud.UPLOAD_CLOUDS[:n_uploads], probe
                )
                delays = _notice_delays(cloud, since)
                verify = _step_seconds(result.stderr, "verify")
                row = {
                    "bases": n_bases,
                    "upload_clouds": n_uploads,
                    "wall_s": round(wall, 1),
                    "wall_over_guest": round(wall / args.guest_seconds, 2),
                    "notice_median_s": round(statistics.median(delays), 2) if delays else None,
                    "verify_median_s": round(statistics.median(verify), 1) if verify else None,
                    "api_calls_per_build": round(probe_out["calls"] / n_bases, 1),
                    "cli_peak_rss_mib": round(probe_out["maxrss_mib"]),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
        if not args.skip_big:
            cloud.guests([guest.GuestScript(match=PREFIX, after=1, image_size=GIB)])
            wall, probe_out, _ = _run_build(
                cloud, images.url, BASES[:1], LocalCloud.UPLOAD_CLOUDS, probe
            )
            big = {
                "copy_1GiB_to_3_clouds_wall_s": round(wall, 1),
                "cli_peak_rss_mib": round(probe_out["maxrss_mib"]),
            }
            print(json.dumps(big), flush=True)
    print("\nbases uploads  wall(s)  wall/guest  notice(s)  verify(s)  calls/build  rss(MiB)")
    for r in rows:
        cells = (r["bases"], r["upload_clouds"], r["wall_s"], r["wall_over_guest"])
        tail = (
            r["notice_median_s"],
            r["verify_median_s"],
            r["api_calls_per_build"],
            r["cli_peak_rss_mib"],
        )
        print("{:>5} {:>7} {:>8} {:>11} {!s:>10} {!s:>10} {:>12} {:>9}".format(*cells, *tail))
    return 0


if __name__ == "__main__":
    sys.exit(main())
