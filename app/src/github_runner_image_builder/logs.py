"""Progress logging: timestamped lines on stderr and, when asked, in a log file."""

import logging
import os
import sys
import time

from image_builder_contract import rules

FORMAT = "%(asctime)s %(levelname)s %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Libraries whose debug output can carry request bodies (user-data holds script secrets) or
# tokens: never below WARNING, whatever --log-level says.
QUIET = ("openstack", "keystoneauth", "urllib3", "requests", "stevedore", "os_client_config")


# A log file this CLI creates: its owner and group only (it may be shipped to a log store).
LOG_FILE_MODE = 0o640


class RedactingFormatter(logging.Formatter):
    """Replaces the credentials of any URL in a line (a cloud's error may quote one)."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the formatted line with URL userinfo replaced by ***."""
        return rules.redact_urls(super().format(record))


def _open_log_file(path: str) -> logging.Handler:
    os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_FILE_MODE))
    return logging.FileHandler(path, encoding="utf-8")


def configure(level: str, log_file: str | None = None) -> None:
    """Send this package's log records to stderr (and `log_file`) at `level`."""
    formatter = RedactingFormatter(FORMAT, DATE_FORMAT)
    formatter.converter = time.gmtime
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(_open_log_file(log_file))
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if isinstance(handler, logging.FileHandler):  # ours, from an earlier call: its file
            handler.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
