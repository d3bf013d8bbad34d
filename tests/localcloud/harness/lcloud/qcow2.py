"""Write and read small, valid qcow2 images whose first guest bytes carry a JSON payload.

Glance checks that uploaded bytes match the declared disk format, and no qemu-img is needed:
the layout is the simplest one qcow2 allows (one refcount block, one L1 table, L2 tables, then
the data clusters in guest order), which limits an image to about 2 GiB.
"""

import hashlib
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"QFI\xfb"
PAYLOAD_TAG = b"GRIB-LOCALCLOUD-IMAGE\n"
_CLUSTER_BITS = 16
_CLUSTER = 1 << _CLUSTER_BITS
_L2_ENTRIES = _CLUSTER // 8
_REFCOUNTS_PER_BLOCK = _CLUSTER // 2
_COPIED = 1 << 63
_HEADER = struct.Struct(">4sIQIIQIIQQIIQ")  # the 72-byte version 2 header


def _data_chunks(payload: bytes, size: int) -> Iterator[bytes]:
    """Yield the guest bytes: tag, payload length, payload, then a deterministic filler."""
    head = PAYLOAD_TAG + struct.pack(">I", len(payload)) + payload
    yield head
    remaining = size - len(head)
    filler = hashlib.sha256(payload).digest() * (_CLUSTER // 32)
    while remaining > 0:
        piece = filler[: min(remaining, len(filler))]
        remaining -= len(piece)
        yield piece


def write(path: Path, payload: dict[str, Any], size: int = 0) -> None:
    """Write a qcow2 image to `path` whose guest content starts with `payload` as JSON.

    `size` is the guest data size in bytes (rounded up to whole 64 KiB clusters); the file
    is about that big, so a benchmark can ask for a 1 GiB image.
    """
    body = json.dumps(payload, sort_keys=True).encode()
    size = max(size, len(PAYLOAD_TAG) + 4 + len(body))
    data_clusters = -(-size // _CLUSTER)
    l2_tables = -(-data_clusters // _L2_ENTRIES)
    # cluster 0 header, 1 refcount table, 2 refcount block, 3 L1, then L2 tables, then data
    first_l2 = 4
    first_data = first_l2 + l2_tables
    total = first_data + data_clusters
    if total > _REFCOUNTS_PER_BLOCK:
        raise ValueError(f"image too large for this writer: {size} bytes")
    with path.open("wb") as out:
        header = _HEADER.pack(
            MAGIC, 2, 0, 0, _CLUSTER_BITS, data_clusters * _CLUSTER, 0,
            l2_tables, 3 * _CLUSTER, 1 * _CLUSTER, 1, 0, 0,
        )  # fmt: skip
        out.write(header.ljust(_CLUSTER, b"\0"))
        out.write(struct.pack(">Q", 2 * _CLUSTER).ljust(_CLUSTER, b"\0"))
        out.write((struct.pack(">H", 1) * total).ljust(_CLUSTER, b"\0"))
        l1 = b"".join(
            struct.pack(">Q", ((first_l2 + i) * _CLUSTER) | _COPIED) for i in range(l2_tables)
        )
        out.write(l1.ljust(_CLUSTER, b"\0"))
        for table in range(l2_tables):
            start = table * _L2_ENTRIES
            count = min(_L2_ENTRIES, data_clusters - start)
            l2 = b"".join(
                struct.pack(">Q", ((first_data + start + i) * _CLUSTER) | _COPIED)
                for i in range(count)
            )
            out.write(l2.ljust(_CLUSTER, b"\0"))
        written = 0
        for chunk in _data_chunks(body, data_clusters * _CLUSTER):
            out.write(chunk)
            written += len(chunk)
        out.write(b"\0" * (data_clusters * _CLUSTER - written))


def read_payload(stream: BinaryIO) -> dict[str, Any]:
    """Return the JSON payload of an image written by `write` (raises ValueError otherwise)."""
    header = stream.read(_CLUSTER)
    if len(header) < _HEADER.size or header[:4] != MAGIC:
        raise ValueError("not a qcow2 image")
    fields = _HEADER.unpack(header[: _HEADER.size])
    l1_offset = fields[8]
    # The writer lays clusters out in order, so the first data cluster follows the L2 tables.
    stream.read(l1_offset - _CLUSTER)
    l1 = stream.read(_CLUSTER)
    (l2_entry,) = struct.unpack(">Q", l1[:8])
    stream.read((l2_entry & ~_COPIED) - l1_offset - _CLUSTER)
    l2 = stream.read(_CLUSTER)
    (data_entry,) = struct.unpack(">Q", l2[:8])
    stream.read((data_entry & ~_COPIED) - (l2_entry & ~_COPIED) - _CLUSTER)
    data = stream.read(_CLUSTER)
    if not data.startswith(PAYLOAD_TAG):
        raise ValueError("qcow2 image carries no local-cloud payload")
    start = len(PAYLOAD_TAG)
    (length,) = struct.unpack(">I", data[start : start + 4])
    payload: dict[str, Any] = json.loads(data[start + 4 : start + 4 + length])
    return payload
