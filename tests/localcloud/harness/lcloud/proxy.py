"""A loopback TCP proxy in front of a service, able to fail on demand.

Each cloud's view of a service can go through its own proxy, so one cloud can see a fault that
the others do not. The fault mode is read from the state directory for every new connection
(see `guest.set_fault`), so the Nova test driver can switch a fault on mid-build too:
  down        — the connection is closed at once (the service is unreachable);
  503         — every request gets "503 Service Unavailable";
  503-upload  — only image data uploads (PUT …/file, …/stage, POST …/import) get 503,
                so the image record exists and is left `queued` unless the client cleans up;
  reset       — the request is read, then the connection is reset without an answer.
A mode followed by a count ("503 2") hits only that many new connections (`guest.take_fault`).
"""

import contextlib
import socket
import struct
import threading
from collections.abc import Callable

_BODY_503 = b'{"message": "local cloud fault: service unavailable"}\n'
_RESPONSE_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BODY_503), _BODY_503)
)


class FaultProxy:
    """Forward 127.0.0.1:<port> to an upstream port, unless a fault is switched on."""

    def __init__(self, upstream: int, fault: Callable[[], str | None]) -> None:
        self._upstream = upstream
        self._fault = fault
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"proxy-{self.port}").start()

    def close(self) -> None:
        """Stop accepting connections."""
        self._closed = True
        self._server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        mode = self._fault()
        if mode == "down":
            client.close()
            return
        if mode == "503":
            self._refuse(client)
            return
        if mode == "reset":
            self._reset(client)
            return
        if mode == "503-upload":
            self._filter_uploads(client)
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self._upstream))
        except OSError:
            client.close()
            return
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)

    @staticmethod
    def _refuse(client: socket.socket) -> None:
        with client, contextlib.suppress(OSError):
            if _read_head(client) is not None:
                client.sendall(_RESPONSE_503)

    @staticmethod
    def _reset(client: socket.socket) -> None:
        with client, contextlib.suppress(OSError):
            if _read_head(client) is not None:
                # SO_LINGER 0: close() sends a RST, the client sees "connection reset by peer".
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _filter_uploads(self, client: socket.socket) -> None:
        """Inspect one request per connection: refuse uploads, forward the rest.

        The forwarded request says `Connection: close`, so the client opens a new connection
        (inspected again) for its next request.
        """
        try:
            head = _read_head(client)
        except OSError:
            client.close()
            return
        if head is None:
            client.close()
            return
        request_line, _, rest = head.partition(b"\r\n")
        method, path = [*request_line.split(b" "), b"", b""][:2]
        if _is_upload(method, path):
            with client, contextlib.suppress(OSError):
                client.sendall(_RESPONSE_503)
            return
        headers = [
            line for line in rest.split(b"\r\n") if not line.lower().startswith(b"connection:")
        ]
        head = b"\r\n".join([request_line, *headers[:-2], b"Connection: close", b"", b""])
        try:
            upstream = socket.create_connection(("127.0.0.1", self._upstream))
            upstream.sendall(head)
        except OSError:
            client.close()
            return
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)


def _is_upload(method: bytes, path: bytes) -> bool:
    path = path.split(b"?")[0].rstrip(b"/")
    return (method == b"PUT" and path.endswith((b"/file", b"/stage"))) or (
        method == b"POST" and path.endswith(b"/import")
    )


def _read_head(client: socket.socket) -> bytes | None:
    """Read up to the end of a request's headers; the bytes after it stay in the socket."""
    client.settimeout(10)
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        chunk = client.recv(1)  # byte by byte, so no body byte is swallowed
        if not chunk or len(head) > 65536:
            return None
        head += chunk
    client.settimeout(None)
    return head


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes one way until either side closes, then close both."""
    try:
        while chunk := source.recv(262144):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
