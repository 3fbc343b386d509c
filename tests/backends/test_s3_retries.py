"""S3Backend against a real S3 server that answers errors first: 5xx and
throttling answers are retried with backoff, and after the last attempt the
call fails with a retryable RepositoryError naming the answer.

The errors come from a small relay in front of SeaweedFS: it answers the
first requests itself (an S3 error document, as S3 sends it), then relays
every later connection to the server byte for byte. What is stored is stored
by the real server.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from filetwin.backends.s3 import S3Backend
from filetwin.errors import RepositoryError, RepositoryRefused
from tests.helpers import read_request
from tests.s3server import S3Server, fresh_location

REASONS = {500: "Internal Server Error", 503: "Service Unavailable", 429: "Too Many Requests"}


class RefusingRelay:
    """Listens on 127.0.0.1; answers the first ``refuse`` requests with ``status``
    and the S3 error ``code`` (closing the connection), relays the rest to
    ``port``."""

    def __init__(self, port: int, status: int, code: str, refuse: int) -> None:
        self.target = port
        self.status, self.code, self.refuse = status, code, refuse
        self.refused = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            refusing = self.refused < self.refuse
            if refusing:
                self.refused += 1
        if refusing:
            with conn:
                self._answer_error(conn)
            return
        upstream = socket.create_connection(("127.0.0.1", self.target))
        threading.Thread(target=_pump, args=(upstream, conn), daemon=True).start()
        _pump(conn, upstream)

    def _answer_error(self, conn: socket.socket) -> None:
        head, end, body = read_request(conn).partition(b"\r\n\r\n")
        if not end:
            return  # the client went away
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])
        }
        if b"100-continue" not in headers.get(b"expect", b"").lower():
            # Take the whole body, as a server does before it answers.
            length = int(headers.get(b"content-length", b"0"))
            while len(body) < length:
                data = conn.recv(65536)
                if not data:
                    return
                body += data
        doc = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{self.code}</Code>'
            f"<Message>injected by the test relay</Message></Error>"
        ).encode()
        conn.sendall(
            f"HTTP/1.1 {self.status} {REASONS[self.status]}\r\n"
            f"Content-Type: application/xml\r\nContent-Length: {len(doc)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + doc
        )


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def relay(server: S3Server, status: int, code: str, refuse: int) -> Iterator[RefusingRelay]:
    r = RefusingRelay(server.s3_port, status, code, refuse)
    try:
        yield r
    finally:
        r.close()


def through(server: S3Server, r: RefusingRelay, location: str, attempts: int) -> S3Backend:
    args = {**server.backend_args(), "endpoint_url": r.endpoint}
    return S3Backend(location, timeout=5.0, attempts=attempts, **args)


@pytest.mark.parametrize(
    ("status", "code"), [(503, "SlowDown"), (500, "InternalError"), (429, "SlowDown")]
)
def test_errors_and_throttling_are_retried(
    s3_server: S3Server,
    status: int,
    code: str,
) -> None:
    location = fresh_location(s3_server)
    data = os.urandom(300_000)
    with relay(s3_server, status, code, refuse=2) as r:
        through(s3_server, r, location, attempts=4).put("packs/p", data)
        assert r.refused == 2
    with relay(s3_server, status, code, refuse=2) as r:
        assert through(s3_server, r, location, attempts=4).get("packs/p") == data
        assert r.refused == 2
    direct = S3Backend(location, **s3_server.backend_args())
    assert direct.get("packs/p") == data


def test_the_last_attempt_fails_retryable_naming_the_answer(
    s3_server: S3Server,
) -> None:
    location = fresh_location(s3_server)
    with relay(s3_server, 503, "SlowDown", refuse=100) as r:
        with pytest.raises(RepositoryError) as e:
            through(s3_server, r, location, attempts=3).put("packs/p", b"x" * 1000)
        assert r.refused == 3  # every attempt, and no more
    assert e.value.retryable and not isinstance(e.value, RepositoryRefused)
    assert "503" in str(e.value) and "packs/p" in str(e.value)
    assert not S3Backend(location, **s3_server.backend_args()).exists("packs/p")
