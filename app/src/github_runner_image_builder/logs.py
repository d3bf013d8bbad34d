"""Progress logging: timestamped lines on stderr and, when asked, in a log file."""

import logging
import sys
import time

FORMAT = "%(asctime)s %(levelname)s %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Libraries whose debug output can carry request bodies (user-data holds script secrets) or
# tokens: never below WARNING, whatever --log-level says.
QUIET = ("openstack", "keystoneauth", "urllib3", "requests", "stevedore", "os_client_config")


def configure(level: str, log_file: str | None = None) -> None:
    """Send this package's log records to stderr (and `log_file`) at `level`."""
    formatter = logging.Formatter(FORMAT, DATE_FORMAT)
    formatter.converter = time.gmtime
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
