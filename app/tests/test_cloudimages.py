"""Tests of the Ubuntu cloud image mirror handling and the base image step."""

import hashlib
import io
from pathlib import Path

import pytest

from app.tests.fakes import FakeCloud, qcow2
from github_runner_image_builder.images import baseimage, ubuntu_mirror
from image_builder_contract import platforms

NOBLE = platforms.parse_base("noble")
X64 = platforms.parse_arch("x64")
ARM = platforms.parse_arch("arm64")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_find_sha256_in_sums() -> None:
    sums = (
        f"{'a' * 64} *noble-server-cloudimg-arm64.img\n"
        f"{'B' * 64} *noble-server-cloudimg-amd64.img\n"
    )
    assert ubuntu_mirror.find_sha256(sums, "noble-server-cloudimg-amd64.img") == "b" * 64
    with pytest.raises(ubuntu_mirror.ChecksumError, match="lists no noble-server-cloudimg-s390x"):
        ubuntu_mirror.find_sha256(sums, "noble-server-cloudimg-s390x.img")


def test_urls() -> None:
    assert ubuntu_mirror.file_name(NOBLE, X64) == "noble-server-cloudimg-amd64.img"
    assert ubuntu_mirror.directory_url("https://m", NOBLE) == "https://m/noble/current"
    assert ubuntu_mirror.check_url("file:///srv/mirror/") == "file:///srv/mirror"
    with pytest.raises(ValueError, match="must be an http"):
        ubuntu_mirror.check_url("ftp://example.com")


def test_disk_format_from_magic() -> None:
    assert ubuntu_mirror.disk_format(qcow2()) == "qcow2"
    assert ubuntu_mirror.disk_format(b"\0" * 512) == "raw"


def drain(reader: ubuntu_mirror.VerifyingReader, n: int = 1000) -> bytes:
    out = b""
    while chunk := reader.read(n):
        out += chunk
    return out


@pytest.mark.parametrize("size_known", [True, False])
def test_verifying_reader_passes_matching_bytes(size_known: bool) -> None:
    data = qcow2(5000)
    reader = ubuntu_mirror.VerifyingReader(
        io.BytesIO(data), sha(data), len(data) if size_known else None
    )
    assert reader.peek(4) == b"QFI\xfb"
    assert drain(reader) == data


def test_verifying_reader_withholds_the_last_bytes_on_mismatch() -> None:
    data = qcow2(5000)
    reader = ubuntu_mirror.VerifyingReader(io.BytesIO(data), sha(b"other"), len(data))
    handed_out = b""
    with pytest.raises(ubuntu_mirror.ChecksumError, match="does not match"):
        while chunk := reader.read(1000):
            handed_out += chunk
    assert len(handed_out) == 4000  # the receiver never got a complete image


def test_verifying_reader_unknown_size_fails_at_end() -> None:
    reader = ubuntu_mirror.VerifyingReader(io.BytesIO(b"abc"), sha(b"abd"), None)
    with pytest.raises(ubuntu_mirror.ChecksumError):
        list(reader.chunks())


def test_verifying_reader_short_stream() -> None:
    reader = ubuntu_mirror.VerifyingReader(io.BytesIO(b"abc"), sha(b"abc"), 10)
    with pytest.raises(ubuntu_mirror.ChecksumError, match="got 3 of 10 bytes"):
        drain(reader)


def make_mirror(root: Path, images: dict[str, bytes]) -> str:
    directory = root / "noble" / "current"
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, data in images.items():
        (directory / name).write_bytes(data)
        lines.append(f"{sha(data)} *{name}")
    (directory / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return root.as_uri()


def test_base_image_fetched_once_then_reused(tmp_path: Path) -> None:
    data = qcow2(3 * 1024 * 1024 + 17)
    url = make_mirror(tmp_path, {"noble-server-cloudimg-amd64.img": data})
    cloud = FakeCloud()
    image_id, fetched = baseimage.ensure_base_image(cloud, url, "p", NOBLE, X64)
    assert fetched
    assert cloud.image_data[image_id] == data
    info = cloud.image_info[image_id]
    assert info.name == "p-base-noble-amd64"
    assert info.disk_format == "qcow2"
    assert info.properties["architecture"] == "x86_64"
    assert info.properties["os_version"] == "24.04"
    assert info.properties[baseimage.UPSTREAM_SHA256] == sha(data)
    assert baseimage.ensure_base_image(cloud, url, "p", NOBLE, X64) == (image_id, False)
    assert cloud.calls.count("upload_image") == 1


def test_base_image_refetched_when_upstream_changes(tmp_path: Path) -> None:
    cloud = FakeCloud()
    url = make_mirror(tmp_path, {"noble-server-cloudimg-arm64.img": qcow2(100)})
    old_id, _ = baseimage.ensure_base_image(cloud, url, "p", NOBLE, ARM)
    make_mirror(tmp_path, {"noble-server-cloudimg-arm64.img": qcow2(200)})
    new_id, fetched = baseimage.ensure_base_image(cloud, url, "p", NOBLE, ARM)
    assert fetched and new_id != old_id
    assert list(cloud.image_info) == [new_id]  # the stale copy is gone
    assert cloud.image_info[new_id].properties["architecture"] == "aarch64"


def test_raw_mirror_image_uploaded_as_raw(tmp_path: Path) -> None:
    url = make_mirror(tmp_path, {"noble-server-cloudimg-amd64.img": b"\0" * 4096})
    cloud = FakeCloud()
    image_id, _ = baseimage.ensure_base_image(cloud, url, "p", NOBLE, X64)
    assert cloud.image_info[image_id].disk_format == "raw"


def test_corrupt_download_leaves_no_image(tmp_path: Path) -> None:
    url = make_mirror(tmp_path, {"noble-server-cloudimg-amd64.img": qcow2(5000)})
    (tmp_path / "noble/current/noble-server-cloudimg-amd64.img").write_bytes(qcow2(5001))
    cloud = FakeCloud()
    with pytest.raises(ubuntu_mirror.ChecksumError):
        baseimage.ensure_base_image(cloud, url, "p", NOBLE, X64)
    assert cloud.image_info == {}
