"""Read a stream once and feed it to several consumers in parallel, in bounded memory.

Each consumer runs in its own thread and reads from a `QueueReader`, a file-like object fed by
a queue of at most `depth` chunks. The producer puts the same chunk object (not a copy) into
every live queue, so the slowest consumer sets the pace and the producer is never more than
`depth + 2` chunks ahead of it (`depth` queued, one in the consumer's hands, one being put).
The image data held at once is therefore at most (depth + 2) x chunk size, whatever the
stream's length and however many consumers share it. A consumer that fails is dropped and
its queue drained; the others go on. A producer that fails ends every consumer's stream with
that error, so no upload completes from a truncated stream.
"""

import dataclasses
import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_DEPTH = 4
_END = b""


class SourceError(Exception):
    """Reading the source failed; every consumer sees this instead of the end of the stream."""


class QueueReader:
    """The file-like end of one consumer's queue: `read(n)` returns the next bytes, b"" at end."""

    def __init__(self, depth: int, size: int | None) -> None:
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=depth)
        self._buffer = b""
        self._offset = 0  # read position in _buffer: slicing off the rest would copy it
        self._size = size
        self._ended = False
        self.failed = threading.Event()

    def __len__(self) -> int:
        # Lets requests send a Content-Length rather than a chunked body.
        if self._size is None:
            raise TypeError("size unknown")
        return self._size

    def read(self, n: int = -1) -> bytes:
        """Return up to `n` bytes (one queued chunk when n < 0); raise the producer's error."""
        if self._offset >= len(self._buffer) and not self._ended:
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._ended = True
                raise SourceError(str(item)) from item
            if item == _END:
                self._ended = True
            self._buffer, self._offset = item, 0
        left = len(self._buffer) - self._offset
        n = left if n is None or n < 0 else min(n, left)
        data = self._buffer[self._offset : self._offset + n]
        self._offset += n
        return data

    def put(self, item: bytes | BaseException) -> bool:
        """Queue `item` unless this consumer failed; return whether it is still live."""
        while not self.failed.is_set():
            try:
                self._queue.put(item, timeout=0.2)
            except queue.Full:
                continue
            return True
        return False

    def abandon(self) -> None:
        """Mark this consumer failed and free its queue so the producer never blocks on it."""
        self.failed.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return


@dataclasses.dataclass(frozen=True)
class Result(Generic[T]):
    """One consumer's return value, or the error that stopped it."""

    value: T | None = None
    error: BaseException | None = None


def fan_out(
    chunks: Iterable[bytes],
    consumers: Mapping[str, Callable[[QueueReader], T]],
    size: int | None = None,
    depth: int = DEFAULT_DEPTH,
) -> dict[str, Result[T]]:
    """Feed every chunk of `chunks` to each consumer; return each consumer's result by key."""
    readers = {key: QueueReader(depth, size) for key in consumers}

    def consume(key: str) -> T:
        reader = readers[key]
        try:
            value = consumers[key](reader)
        except BaseException:
            reader.abandon()
            raise
        # A consumer that returned early without reading everything is done with its queue too.
        reader.abandon()
        return value

    with futures.ThreadPoolExecutor(max_workers=max(1, len(consumers))) as pool:
        running = {key: pool.submit(consume, key) for key in consumers}
        try:
            for chunk in chunks:
                if not chunk:
                    continue
                live = [reader.put(chunk) for reader in readers.values()]
                if not any(live):
                    break
            for reader in readers.values():
                reader.put(_END)
        except Exception as exc:
            for reader in readers.values():
                reader.put(exc)
        results: dict[str, Result[T]] = {}
        for key, future in running.items():
            try:
                results[key] = Result(value=future.result())
            except Exception as exc:
                results[key] = Result(error=exc)
    return results
