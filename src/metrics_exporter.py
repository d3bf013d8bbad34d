#!/usr/bin/env python3
"""The metrics service: serves one unit's build figures to Prometheus on a loopback port.

Run by systemd (src/metrics_service.py writes the unit) with the charm's own interpreter and
import path, so a charm upgrade brings the new code on the restart that follows it. It only
reads the charm's records (see src/metrics.py) and listens on 127.0.0.1: the COS collector
scrapes it from the same machine.
"""

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from prometheus_client import CollectorRegistry, start_http_server

import metrics
import unit_paths
from job_records import JobRecords

logger = logging.getLogger("metrics_exporter")


def registry_for(charm_dir: Path, unit: str, state_dir: Path | None = None) -> CollectorRegistry:
    """Return a registry whose only collector reads this unit's records on every scrape."""
    paths = unit_paths.default_paths(charm_dir, unit)
    if state_dir is not None:
        paths = dataclasses.replace(paths, state_dir=state_dir)
    records = JobRecords(paths, repair=False)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.RecordsCollector(lambda: metrics.read_records(records)))
    return registry


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM; exit 2 on a usage error, like every command of this project."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--charm-dir", type=Path, required=True)
    parser.add_argument("--unit", required=True, help="the Juju unit, e.g. app/0")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=metrics.PORT)
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="the records' folder (default: the unit's)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    registry = registry_for(args.charm_dir, args.unit, args.state_dir)
    server, thread = start_http_server(args.port, addr=args.address, registry=registry)
    logger.info("serving %s metrics on %s:%d", args.unit, args.address, args.port)
    stop = threading.Event()

    def on_term(signum: int, _: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    stop.wait()
    server.shutdown()
    thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
