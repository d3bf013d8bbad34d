"""Ubuntu cloud images: where they are, what their checksum is, reading them verified.

Layout (cloud-images.ubuntu.com and its mirrors): `<url>/<codename>/current/SHA256SUMS` and
`<url>/<codename>/current/<codename>-server-cloudimg-<arch>.img` (a qcow2 file); a pinned
serial's directory `<url>/<codename>/<serial>/` holds the same files.
"""

import contextlib
import hashlib
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator

from image_builder_contract import platforms, spec

DEFAULT_URL = spec.DEFAULT_CLOUD_IMAGES_URL
check_url = spec.check_cloud_images_url
CHUNK = 1024 * 1024
_SUM_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


class ChecksumError(Exception):
    """The bytes read do not match the published checksum, or none is published."""


def file_name(base: platforms.Base, arch: platforms.Arch) -> str:
    """Return the cloud image file of (base, arch): the VM's architecture (arm64 for armhf)."""
    return f"{base.codename}-server-cloudimg-{arch.vm_ubuntu}.img"


def directory_url(url: str, base: platforms.Base) -> str:
    """Return the directory holding the images of `base`: its pinned serial's, or the current."""
    return f"{url}/{base.codename}/{base.serial or 'current'}"


def find_sha256(sums: str, name: str) -> str:
    """Return the SHA256 that a SHA256SUMS text gives for file `name`; raise ChecksumError."""
    for line in sums.splitlines():
        match = _SUM_LINE.match(line.strip())
        if match and match.group(2) == name:
            return match.group(1).lower()
    raise ChecksumError(f"SHA256SUMS lists no {name}")


class VerifyingReader:
    """A file-like reader that hashes what passes through and refuses to finish on a mismatch.

    With a known size it raises before handing out the last bytes, so the receiver (Glance)
    never gets a complete, wrong image; with an unknown size it raises at end of file, before
    the upload's final chunk. Reads at most `read(n)` bytes at a time: memory stays bounded.
    """

    def __init__(self, stream: object, expected_sha256: str, size: int | None) -> None:
        self._stream = stream
        self._expected = expected_sha256
        self._size = size
        self._hash = hashlib.sha256()
        self.read_bytes = 0
        self._pending = b""

    def peek(self, n: int = 512) -> bytes:
        """Return the first `n` bytes without consuming them (call before any read)."""
        if self.read_bytes or self._pending:
            raise RuntimeError("peek only before the first read")
        self._pending = self._stream.read(n)  # type: ignore[attr-defined]
        return self._pending

    def __len__(self) -> int:
        # requests sends a Content-Length (not chunked) when the body has a length.
        if self._size is None:
            raise TypeError("size unknown")
        return self._size

    def _verify(self) -> None:
        actual = self._hash.hexdigest()
        if actual != self._expected:
            raise ChecksumError(f"SHA256 {actual} does not match the published {self._expected}")

    def read(self, n: int = CHUNK) -> bytes:
        """Return up to `n` bytes (at most CHUNK), b"" at end; raise ChecksumError on mismatch."""
        if n is None or n < 0 or n > CHUNK:
            n = CHUNK
        if self._pending:
            data, self._pending = self._pending[:n], self._pending[n:]
        else:
            data = self._stream.read(n)  # type: ignore[attr-defined]
        self._hash.update(data)
        self.read_bytes += len(data)
        if self._size is not None and self.read_bytes > self._size:
            raise ChecksumError(f"got more than the announced {self._size} bytes")
        if (self._size is not None and self.read_bytes == self._size) or not data:
            if not data and self._size is not None and self.read_bytes < self._size:
                raise ChecksumError(f"got {self.read_bytes} of {self._size} bytes")
            self._verify()
        return data

    def chunks(self) -> Iterator[bytes]:
        """Yield the stream in chunks (for uploads whose size is unknown)."""
        while data := self.read(CHUNK):
            yield data


def disk_format(head: bytes) -> str:
    """Return Glance's disk_format for an image starting with `head`: qcow2 or raw.

    Glance refuses bytes that do not match the declared format, so a mirror serving a raw
    image (a test server, say) must be declared raw.
    """
    return "qcow2" if head.startswith(b"QFI\xfb") else "raw"


def fetch_text(url: str, limit: int = 1024 * 1024) -> str:
    """Return the text at `url` (http(s) or file), at most `limit` bytes."""
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - scheme checked
        return str(response.read(limit).decode("utf-8", "replace"))


@contextlib.contextmanager
def open_image(url: str) -> Iterator[tuple[object, int | None]]:
    """Open the image at `url` for streaming; yield (response, size or None)."""
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - scheme checked
        length = response.headers.get("Content-Length")
        yield response, int(length) if length and length.isdigit() else None
