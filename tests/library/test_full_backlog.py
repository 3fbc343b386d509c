"""A full listen backlog on the daemon's socket is waited out, not refused.

Before: a client with a timeout (``Client(timeout=...)``, the CLI's
``--timeout``) failed at once with "Resource temporarily unavailable" when the
daemon's backlog was full for an instant, as CI saw under 1000 connections.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from filetwin import Client
from filetwin.errors import DaemonUnavailable
from filetwin.unixsock import connect_unix


@pytest.fixture
def full_listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A listening socket whose backlog is full: nobody has accepted yet."""
    path = str(tmp_path / "api.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    queued: list[socket.socket] = []
    while True:  # fill the backlog (its length is the kernel's business)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(path)
        except BlockingIOError:
            s.close()
            break
        queued.append(s)
    try:
        yield server, path
    finally:
        for s in queued:
            s.close()
        server.close()


def test_a_full_backlog_is_waited_for_up_to_the_timeout(
    full_listener: tuple[socket.socket, str],
) -> None:
    _server, path = full_listener
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="no free connection slot"):
        connect_unix(path, 0.3)
    assert time.monotonic() - started >= 0.25, "refused at once instead of waiting"


def test_a_slot_freed_while_waiting_lets_the_connection_through(
    full_listener: tuple[socket.socket, str],
) -> None:
    server, path = full_listener
    result: list[object] = []

    def connect() -> None:
        try:
            result.append(connect_unix(path, 30))
        except OSError as e:
            result.append(e)

    t = threading.Thread(target=connect)
    t.start()
    accepted, _ = server.accept()  # frees one slot
    t.join(30)
    accepted.close()
    assert len(result) == 1 and isinstance(result[0], socket.socket), result
    assert result[0].gettimeout() == 30
    result[0].close()


def test_the_client_says_the_daemon_did_not_answer_in_time(
    full_listener: tuple[socket.socket, str],
) -> None:
    _server, path = full_listener
    with pytest.raises(DaemonUnavailable, match="did not answer GET /health within 0.3 s"):
        Client(socket_path=path, timeout=0.3).request("GET", "/health")


def test_no_socket_is_still_no_daemon(tmp_path: Path) -> None:
    with pytest.raises(DaemonUnavailable, match="no filetwin daemon answers"):
        Client(socket_path=tmp_path / "none.sock", timeout=5).request("GET", "/health")
