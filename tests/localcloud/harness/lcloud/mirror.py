"""A stand-in for cloud-images.ubuntu.com on loopback: real small qcow2 files and SHA256SUMS.

Layout as upstream: <url>/<codename>/current/<codename>-server-cloudimg-<arch>.img and
<url>/<codename>/current/SHA256SUMS. `publish` replaces an image, as upstream does when a new
daily image appears, so a test can check that a build notices.
"""

import contextlib
import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lcloud import qcow2


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""


class CloudImagesMirror:
    """Serve a directory tree of fake Ubuntu cloud images over HTTP on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(_QuietHandler, directory=str(root))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def publish(
        self, codename: str, arch: str, revision: str = "1", size: int = 0, serial: str = ""
    ) -> str:
        """Write (or replace) one image and its checksum line; return its sha256.

        With `serial`, in that serial's directory (as upstream keeps every published serial).
        """
        directory = self.root / codename / (serial or "current")
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{codename}-server-cloudimg-{arch}.img"
        payload = {"distro": "ubuntu", "codename": codename, "arch": arch, "revision": revision}
        qcow2.write(directory / name, payload, size)
        digest = hashlib.sha256((directory / name).read_bytes()).hexdigest()
        sums = directory / "SHA256SUMS"
        lines = [
            line
            for line in (sums.read_text().splitlines() if sums.exists() else [])
            if not line.endswith(f"*{name}")
        ]
        sums.write_text("\n".join([*lines, f"{digest} *{name}"]) + "\n")
        return digest

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def serve(root: Path) -> Iterator[CloudImagesMirror]:
    """Serve a mirror rooted at `root` for the duration of the block."""
    mirror = CloudImagesMirror(root)
    try:
        yield mirror
    finally:
        mirror.close()
