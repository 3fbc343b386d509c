"""A client leaving ``events --follow`` is the normal end of a follow.

Before: every follower that had gone put a ClientConnectionResetError
traceback in the daemon's log at the next event.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.helpers import Daemon, wait_until


def start_follow(sock_path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(sock_path))
    s.sendall(b"GET /events?follow=1 HTTP/1.1\r\nHost: filetwin\r\n\r\n")
    head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    return s


def test_followers_that_leave_leave_no_traceback(daemon: Daemon, files: Path) -> None:
    for _ in range(3):
        start_follow(daemon.socket_path).close()
    staying = start_follow(daemon.socket_path)
    target = files / "notes.txt"
    target.write_text("an event for the followers\n")
    daemon.client.add(target)

    # The follower still connected sees the event: the gone ones were written to too.
    def seen() -> bool:
        return b'"added"' in staying.recv(65536)

    wait_until(seen, 10, "the staying follower to see the event")
    staying.close()
    target.write_text("another event\n")
    daemon.client.backup(target)
    daemon.client.ping()
    assert "Traceback" not in daemon.log(), daemon.log()[-3000:]

    # A daemon stopped while a follower waits stops cleanly too.
    follower = start_follow(daemon.socket_path)
    assert daemon.stop(signal.SIGTERM) == 0
    follower.close()
    assert "Traceback" not in daemon.log(), daemon.log()[-3000:]
