"""A TCP relay that reads the Kafka protocol's request and response headers as they pass.

Put in front of a fault proxy, it tells which requests were in flight (sent, not yet answered) when a
connection was cut: the proof that a fault met, say, an EndTxn (``commit_transaction``) and not just
some fetch. ``on_request(api_key)`` runs before a request's bytes are passed on, so a test can switch a
fault on exactly when, say, an EndTxn leaves the client. Only the headers are parsed (a request: size,
api key, version, correlation id; a response: size, correlation id); the bytes pass through unchanged.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from collections.abc import Callable

END_TXN = 26  # the Kafka protocol's api key of EndTxn


class _Frames:
    """Calls ``on_header(header)`` with the first ``header_len`` bytes of each size-prefixed frame."""

    def __init__(self, header_len: int, on_header: Callable[[bytes], None]) -> None:
        self.header_len, self.on_header = header_len, on_header
        self.head, self.skip = b"", 0

    def feed(self, data: bytes) -> None:
        i = 0
        while i < len(data):
            if self.skip:
                n = min(self.skip, len(data) - i)
                self.skip, i = self.skip - n, i + n
                continue
            take = self.header_len - len(self.head)
            self.head, i = self.head + data[i : i + take], i + take
            if len(self.head) < self.header_len:
                return
            size = int.from_bytes(self.head[:4], "big", signed=True)
            self.on_header(self.head[4:])
            self.skip, self.head = size - (self.header_len - 4), b""


class RequestTap:
    """Listens on 127.0.0.1:``port`` (a free one by default) and relays to ``upstream`` (host, port)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.sent: Counter[int] = Counter()  # api key -> requests relayed
        self.cut: Counter[int] = Counter()  # api key -> requests in flight when their connection closed
        self.on_request: Callable[[int], None] | None = None
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        server.settimeout(None)
        in_flight: dict[int, int] = {}  # correlation id -> api key

        def request(header: bytes) -> None:
            api_key, correlation = int.from_bytes(header[:2], "big"), int.from_bytes(header[4:8], "big")
            with self._lock:
                in_flight[correlation] = api_key
                self.sent[api_key] += 1
            if self.on_request is not None:
                self.on_request(api_key)

        def response(header: bytes) -> None:
            with self._lock:
                in_flight.pop(int.from_bytes(header[:4], "big"), None)

        up = threading.Thread(target=_pump, args=(client, server, _Frames(12, request)), daemon=True)
        up.start()
        _pump(server, client, _Frames(8, response))
        up.join()
        with self._lock:
            self.cut.update(in_flight.values())


def _pump(src: socket.socket, dst: socket.socket, frames: _Frames) -> None:
    """Copy ``src`` to ``dst`` until either side closes, then close both (a cut on one side is a cut)."""
    try:
        while data := src.recv(65536):
            frames.feed(data)
            dst.sendall(data)
    except OSError:
        pass
    for sock in (src, dst):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
