"""A daemon that goes away mid-conversation is DaemonUnavailable, never a raw OSError.

Before: ``filetwin.open`` raised ConnectionResetError when the daemon's write
stream was reset during its hello, and a request whose answer was cut short
raised ConnectionResetError or http.client.IncompleteRead. The daemon's side
is played by real Unix sockets that die at exactly those points (a real
daemon cannot be killed at a chosen byte).
"""

from __future__ import annotations

import json
import socket
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import filetwin
from filetwin import Client, DaemonUnavailable
from filetwin.fileobj import JournalWarning
from tests.helpers import read_request


def serve(path: Path, handle: Callable[[socket.socket], None]) -> threading.Thread:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                handle(conn)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "state"
    d.mkdir()
    yield d


@pytest.mark.parametrize("reads_request", [True, False], ids=["eof", "reset"])
def test_an_answer_cut_short_is_daemon_unavailable(state: Path, reads_request: bool) -> None:
    def handle(conn: socket.socket) -> None:
        if reads_request:
            read_request(conn)
        # Headers promise 100 bytes; the daemon dies after one.
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        conn.sendall(b"Content-Length: 100\r\n\r\n[")

    t = serve(state / "filetwin.sock", handle)
    with pytest.raises(DaemonUnavailable, match="went away|cannot talk"):
        Client(socket_path=state / "filetwin.sock", timeout=10).status()
    t.join(10)


def test_filetwin_open_survives_a_stream_reset_in_its_hello(state: Path, tmp_path: Path) -> None:
    target = tmp_path / "log.bin"
    target.write_bytes(b"")
    entry = {
        "path": str(target),
        "backup_mode": "on-write",
        "recovery_mode": "manual",
        "state": "watching",
    }

    def answer_status(conn: socket.socket) -> None:
        read_request(conn)
        body = json.dumps([entry]).encode()
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )

    def reset(conn: socket.socket) -> None:
        # Dies with the hello unread: the client's read meets ECONNRESET.
        conn.recv(1)

    api = serve(state / "filetwin.sock", answer_status)
    stream = serve(state / "journal.sock", reset)
    client = Client(socket_path=state / "filetwin.sock", timeout=10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with filetwin.open(target, "ab", client=client) as f:
            f.write(b"written all the same")
    api.join(10)
    stream.join(10)
    assert target.read_bytes() == b"written all the same"
    assert any(issubclass(w.category, JournalWarning) for w in caught), [
        str(w.message) for w in caught
    ]
