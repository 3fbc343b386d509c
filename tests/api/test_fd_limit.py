"""Out of file descriptors: the daemon keeps serving its jobs and its log stays short.

Before: with 256 descriptors and 300 idle connections the daemon logged
"socket.accept() out of system resource" about 360 times a second, and a save
made meanwhile was never backed up. Now the soft limit is raised to the hard
one at start, the API serves a capped number of connections (extra ones get
an immediate 503 JSON answer), idle ones are closed after a timeout, and the
descriptors left are enough for the watcher and the workers.
"""

from __future__ import annotations

import http.client
import resource
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from filetwin.backends import open_backend
from filetwin.repo import Repository
from filetwin.repo.manifest import Manifest
from filetwin.unixsock import connect_unix
from tests.api.rawhttp import assert_error, raw_request
from tests.helpers import Daemon, wait_until

FD_LIMIT = 256
IDLE_CONNECTIONS = 1000


class LimitedDaemon(Daemon):
    """A daemon started under ``prlimit --nofile=N:N`` (soft and hard)."""

    def start(self) -> Daemon:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                "prlimit",
                f"--nofile={FD_LIMIT}:{FD_LIMIT}",
                sys.executable,
                "-m",
                "filetwin",
                "daemon",
                "--state-dir",
                str(self.state_dir),
                "--config",
                str(self.config_path),
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        wait_until(self._answers, 30, "the daemon to answer")
        return self


def versions(d: Daemon, path: Path) -> list[Manifest]:
    """Read from the repository itself: the API may be saturated on purpose."""
    return Repository(open_backend(d.state_dir / "repository")).versions(str(path))


def busy_answer(path: Path) -> tuple[int, Any] | None:
    """The answer to /health, or None when the daemon cut the connection short."""
    try:
        return raw_request(path, "GET", "/health", timeout=10)
    except (ConnectionError, http.client.HTTPException):
        return None


def test_idle_connections_neither_starve_jobs_nor_flood_the_log(tmp_path: Path) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the test's own side
    d = LimitedDaemon(tmp_path / "state")
    d.start()
    idle: list[socket.socket] = []
    try:
        target = tmp_path / "notes.txt"
        target.write_text("before\n")
        d.client.add(target)
        lines_before = d.log().count("\n")

        for _ in range(IDLE_CONNECTIONS):
            idle.append(connect_unix(str(d.socket_path), 10))
        # Saturated: a new request is answered at once, as the error shape.
        busy = wait_until(lambda: busy_answer(d.socket_path), 10, "a 503 answer")
        assert_error(busy, 503, "too many")

        # A save made now is backed up all the same.
        saved = "saved while the API was saturated\n"
        target.write_text(saved)
        wait_until(
            lambda: any(v.size == len(saved) for v in versions(d, target)),
            30,
            "the save to be backed up",
        )

        # The daemon closes idle connections (ours stay open and silent): the API
        # answers again without the client side doing anything.
        wait_until(
            lambda: (busy_answer(d.socket_path) or (0,))[0] == 200,
            60,
            "/health to answer once idle connections are closed",
        )
        idle[0].settimeout(10)
        assert idle[0].recv(4096) == b"", "an idle connection was left open"
        log = d.log()
        added = log.count("\n") - lines_before
        assert added < 50, log[-3000:]
        assert "out of system resource" not in log
        assert d.proc is not None and d.proc.poll() is None
    finally:
        for s in idle:
            s.close()
        d.stop()
