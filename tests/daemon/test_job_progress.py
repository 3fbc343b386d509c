"""A running job's progress: the entry's ``job_bytes`` (bytes the worker has
read, sent by the worker a few times a second) grows while a backup runs,
shows in `status`, and is cleared when the job ends."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

from tests.helpers import Daemon, wait_until

SIZE = 64 * 1024 * 1024


def test_a_running_backup_shows_its_bytes_read(daemon: Daemon, files: Path) -> None:
    f = files / "big.bin"
    f.write_bytes(os.urandom(1024))
    daemon.client.add(f)
    f.write_bytes(os.urandom(SIZE))
    done: list[object] = []
    t = threading.Thread(target=lambda: done.append(daemon.client.backup(f)))
    t.start()

    def reading() -> Any:
        row = daemon.client.status(f)
        return row["job_kind"] == "backup" and row["job_bytes"] is not None and row

    row = wait_until(reading, 60, "the backup's first progress")
    pid = row["worker_pid"]
    os.kill(pid, signal.SIGSTOP)  # hold the job mid-read: its progress stays visible
    try:
        held = daemon.client.status(f)
        assert held["job_kind"] == "backup" and 0 < held["job_bytes"] < SIZE, held
    finally:
        os.kill(pid, signal.SIGCONT)
    t.join(120)
    assert done and not t.is_alive()
    row = daemon.client.status(f)
    assert row["job_kind"] is None and row["job_bytes"] is None  # cleared at the end
    assert row["size"] == SIZE


def test_the_text_status_shows_a_running_jobs_bytes() -> None:
    from filetwin.cli_status import _fields

    row = {
        "job_kind": "backup", "worker_pid": 42, "job_started_at": "2026-11-25T10:00:00.000Z",
        "job_bytes": 3 * 1048576, "size": 12 * 1048576, "state": "watching",
        "pending_change": "none", "backup_mode": "on-close", "recovery_mode": "manual",
        "source": "cli", "last_result": None, "versions": 1, "last_backup_at": None,
        "path": "/f",
    }  # fmt: skip
    assert _fields(row)["job"].endswith("/3.0/12.0 MiB")
    assert _fields({**row, "size": 1000})["job"].endswith("/3.0 MiB")  # size not yet known
    assert _fields({**row, "job_bytes": None})["job"].endswith("since 2026-11-25T10:00:00.000Z")
