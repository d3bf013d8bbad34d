"""The readers stream through keystoneauth (openstacksdk's HTTP layer) to a real HTTP server.

Checks what unit fakes cannot: a body is sent with a Content-Length in pieces, never read
whole, and a reader that refuses to finish leaves the server with an incomplete body.
"""

import hashlib
import http.server
import io
import threading
import typing
from collections.abc import Iterator

import pytest
from keystoneauth1 import session

from github_runner_image_builder.images import fanout, ubuntu_mirror


class Receiver(http.server.BaseHTTPRequestHandler):
    received: typing.ClassVar[list[tuple[str | None, int, str]]] = []

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        digest = hashlib.sha256()
        got = 0
        while got < length:
            piece = self.rfile.read(min(65536, length - got))
            if not piece:
                break
            digest.update(piece)
            got += len(piece)
        Receiver.received.append((self.headers.get("Content-Length"), got, digest.hexdigest()))
        self.send_response(204 if got == length else 400)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Receiver.received = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/upload"
    httpd.shutdown()
    httpd.server_close()


DATA = bytes(range(256)) * 20000  # 5 MB


class CountingStream(io.BytesIO):
    largest = 0

    def read(self, n: int | None = -1) -> bytes:
        data = super().read(n)
        CountingStream.largest = max(CountingStream.largest, len(data))
        return data


def test_verifying_reader_streams_with_content_length(server: str) -> None:
    stream = CountingStream(DATA)
    reader = ubuntu_mirror.VerifyingReader(stream, hashlib.sha256(DATA).hexdigest(), len(DATA))
    session.Session().put(server, data=reader, headers={"Content-Type": "text/plain"})
    assert Receiver.received == [(str(len(DATA)), len(DATA), hashlib.sha256(DATA).hexdigest())]
    assert CountingStream.largest <= ubuntu_mirror.CHUNK


def test_verifying_reader_mismatch_never_completes_the_body(server: str) -> None:
    reader = ubuntu_mirror.VerifyingReader(io.BytesIO(DATA), "0" * 64, len(DATA))
    with pytest.raises(Exception, match="does not match"):
        session.Session().put(server, data=reader)
    for announced, got, _ in Receiver.received:
        assert announced == str(len(DATA)) and got < len(DATA)


def test_fan_out_readers_stream_to_several_receivers(server: str) -> None:
    def upload(reader: fanout.QueueReader) -> int:
        response = session.Session().put(server, data=reader)
        return int(response.status_code)

    chunks = (DATA[i : i + 65536] for i in range(0, len(DATA), 65536))
    results = fanout.fan_out(chunks, {"a": upload, "b": upload}, size=len(DATA), depth=2)
    assert {k: r.value for k, r in results.items()} == {"a": 204, "b": 204}
    digest = hashlib.sha256(DATA).hexdigest()
    assert sorted(Receiver.received) == [(str(len(DATA)), len(DATA), digest)] * 2
