"""Tests of feeding one stream to several consumers in bounded memory."""

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from github_runner_image_builder.images import fanout


def read_all(reader: fanout.QueueReader, n: int = 100) -> bytes:
    out = b""
    while chunk := reader.read(n):
        out += chunk
    return out


def chunks(count: int, size: int = 256) -> list[bytes]:
    return [bytes([i % 256]) * size for i in range(count)]


def test_every_consumer_gets_every_byte() -> None:
    data = chunks(50)
    results = fanout.fan_out(iter(data), {k: read_all for k in "abc"}, depth=2)
    assert {k: r.value for k, r in results.items()} == {k: b"".join(data) for k in "abc"}


def test_producer_never_runs_more_than_the_bound_ahead_of_the_slowest() -> None:
    depth = 3
    produced = 0
    consumed = {"fast": 0, "slow": 0}
    most_ahead = 0
    lock = threading.Lock()

    def source() -> Iterator[bytes]:
        nonlocal produced, most_ahead
        for chunk in chunks(40, 10):
            with lock:
                produced += 1
                most_ahead = max(most_ahead, produced - min(consumed.values()))
            yield chunk

    def consumer(name: str, pause: float) -> Callable[[fanout.QueueReader], int]:
        def run(reader: fanout.QueueReader) -> int:
            total = 0
            while chunk := reader.read(10):
                time.sleep(pause)
                total += len(chunk)
                with lock:
                    consumed[name] += 1
            return total

        return run

    results = fanout.fan_out(
        source(), {"fast": consumer("fast", 0), "slow": consumer("slow", 0.002)}, depth=depth
    )
    assert results["fast"].value == results["slow"].value == 400
    # Chunks alive at once: those queued (depth), one in the consumer's hands, one being put.
    assert most_ahead <= depth + 2
    assert most_ahead >= depth  # the slow consumer really did hold the producer back


def test_a_failed_consumer_does_not_stop_the_others() -> None:
    def broken(reader: fanout.QueueReader) -> bytes:
        reader.read(1)
        raise RuntimeError("cloud b refused")

    data = chunks(30)
    results = fanout.fan_out(iter(data), {"a": read_all, "b": broken, "c": read_all}, depth=1)
    assert results["a"].value == results["c"].value == b"".join(data)
    assert isinstance(results["b"].error, RuntimeError)


def test_a_failed_source_fails_every_consumer() -> None:
    def source() -> Iterator[bytes]:
        yield b"start"
        raise OSError("connection reset")

    results = fanout.fan_out(source(), {"a": read_all, "b": read_all})
    for result in results.values():
        assert isinstance(result.error, fanout.SourceError)
        assert "connection reset" in str(result.error)


def test_reader_length_is_the_announced_size() -> None:
    assert len(fanout.QueueReader(1, 42)) == 42
    with pytest.raises(TypeError):
        len(fanout.QueueReader(1, None))
