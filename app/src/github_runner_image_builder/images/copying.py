"""Copy one image from the build cloud to several clouds at once, streaming.

The source is read once; `fanout` feeds every target in bounded memory: at most
(depth + 2) x chunk of image data (6 MiB with the defaults) however many targets, plus each
HTTP connection's own small send buffer (see `fanout`). Each copy is checked against the
checksum and size Glance reports for the source; a copy that fails or differs is deleted,
never left behind. A cancellation ends the source stream with an error, so every upload
fails (and is deleted) instead of completing.
"""

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping

from github_runner_image_builder.cancel import NEVER, Cancellation
from github_runner_image_builder.cloud.client import Cloud, ImageInfo
from github_runner_image_builder.images import fanout

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
DEPTH = fanout.DEFAULT_DEPTH


class CopyError(Exception):
    """A copy did not arrive intact."""


def memory_bound(chunk: int = CHUNK, depth: int = DEPTH) -> int:
    """Return the most bytes of image data a copy holds at once, for any number of targets."""
    return (depth + 2) * chunk


def verify_copy(source: ImageInfo, copy: ImageInfo) -> None:
    """Raise CopyError unless the copy is active with the source's size and checksums."""
    if copy.status != "active":
        raise CopyError(f"copy is {copy.status}, not active")
    if source.size is not None and copy.size != source.size:
        raise CopyError(f"copy has {copy.size} bytes, the source {source.size}")
    if source.checksum and copy.checksum != source.checksum:
        raise CopyError(
            f"copy checksum {copy.checksum} differs from the source's {source.checksum}"
        )
    if (
        source.hash_value
        and copy.hash_algo == source.hash_algo
        and copy.hash_value != source.hash_value
    ):
        raise CopyError(f"copy {copy.hash_algo} differs from the source's")
    if not source.checksum and not source.hash_value:
        raise CopyError("the source image has no checksum to check the copy against")


class _Body:
    """An upload's body: the reader's whole chunks, and its length for the Content-Length.

    Having no read(), it is sent a whole chunk per call (urllib3 iterates it) rather than
    read in 16 KiB blocks, each a slice and a send call of its own.
    """

    def __init__(self, reader: fanout.QueueReader) -> None:
        self._reader = reader

    def __len__(self) -> int:
        return len(self._reader)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self._reader.read(-1):
            yield chunk


def _unless_cancelled(chunks: Iterable[bytes], cancellation: Cancellation) -> Iterator[bytes]:
    for chunk in chunks:
        cancellation.check()
        yield chunk


def copy_image(
    source_cloud: Cloud,
    source: ImageInfo,
    targets: Mapping[str, Cloud],
    *,
    properties: Mapping[str, str],
    chunk: int = CHUNK,
    depth: int = DEPTH,
    cancellation: Cancellation = NEVER,
) -> dict[str, ImageInfo | Exception]:
    """Copy `source` to every target cloud; return each cloud's copy or the error."""
    if not targets:
        return {}

    def upload_to(cloud: Cloud) -> Callable[[fanout.QueueReader], ImageInfo]:
        def upload(reader: fanout.QueueReader) -> ImageInfo:
            copy = cloud.upload_image(
                source.name,
                _Body(reader),
                disk_format=source.disk_format or "qcow2",
                container_format=source.container_format or "bare",
                properties=properties,
            )
            try:
                verify_copy(source, cloud.get_image(copy.id))
            except Exception:
                cloud.delete_image(copy.id)
                raise
            return copy

        return upload

    results: dict[str, ImageInfo | Exception] = {}
    with source_cloud.download_image(source.id, chunk) as chunks:
        outcome = fanout.fan_out(
            _unless_cancelled(chunks, cancellation),
            {name: upload_to(cloud) for name, cloud in targets.items()},
            size=source.size,
            depth=depth,
        )
    for name, result in outcome.items():
        if result.error is not None:
            error = result.error
            results[name] = error if isinstance(error, Exception) else Exception(str(error))
        elif result.value is not None:
            results[name] = result.value
    return results
