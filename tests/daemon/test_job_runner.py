"""The job runner: restores show in status like any job; a failed job's
table row says which kind failed; chunks a failed backup stored are collected."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from filetwin.backends import open_backend
from filetwin.repo import Repository
from tests.faults.strace import inject
from tests.helpers import Daemon, stored_chunks, wait_until


def test_a_restore_is_a_job_in_status(make_daemon: Callable[..., Daemon], files: Path) -> None:
    daemon = make_daemon(worker_stall_s=1.0, timeout_floor_s=30.0)
    f = files / "doc.txt"
    f.write_text("one\n")
    daemon.client.add(f)
    [v1] = daemon.client.history(f)

    def restoring() -> dict[str, Any] | None:
        row: dict[str, Any] = daemon.client.status(f)
        return row if row["job_kind"] == "restore" and row["worker_pid"] else None

    with ThreadPoolExecutor(1) as ex:
        done = ex.submit(daemon.client.restore, f, version=v1["id"], to=str(files / "out.txt"))
        wait_until(restoring, what="the restore job in status")
        done.result(60)
    row = daemon.client.status(f)
    assert row["job_kind"] is None and row["last_job_kind"] == "restore"
    assert row["last_result"] == "ok"
    assert (files / "out.txt").read_text() == "one\n"


def test_chunks_of_a_failed_backup_are_collected(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    """The worker stores the chunks, the daemon's commit fails: once the backup
    has failed for good, gc removes what no version references."""
    daemon = make_daemon(gc_delay_s=0.2, retry_backoff_s=0.05, timeout_floor_s=10.0)
    f = files / "big.bin"
    f.write_bytes(os.urandom(64 * 1024))
    daemon.client.add(f)
    repo = Repository(open_backend(str(daemon.state_dir / "repository")))

    def stored() -> set[str]:
        return stored_chunks(repo)

    def failed() -> bool:  # for good: after its retries
        return any(e["kind"] == "backup-failed" for e in daemon.client.events(f))

    with inject([daemon.pid], "rename", "EIO", when="1+"):  # every manifest commit fails
        f.write_bytes(os.urandom(2 * 1024 * 1024))
        wait_until(failed, 30, "the failed backup")
    def collected() -> bool:
        return stored() == {c for m in repo.versions(str(f)) for c in m.chunks}

    wait_until(collected, 15, "the orphan chunks to be collected")
    row = daemon.client.status(f)
    assert row["last_job_kind"] == "backup"


def test_a_capture_past_its_deadline_is_a_timeout_event_and_retried(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    """Captures (on-write without the library) run under the entry's --timeout
    and --retries like every job; a timeout is an event, not a debug line."""
    daemon = make_daemon(timeout_floor_s=30.0, retry_backoff_s=0.05, capture_quiet_ms=20)
    f = files / "db.bin"
    f.write_bytes(b"a" * 4096)
    daemon.client.add(f, backup="on-write")
    daemon.client.update(f, timeout=0.5, retries=1)
    daemon.stop()
    daemon.write_config({"timeout_floor_s": 30.0, "retry_backoff_s": 0.05, "worker_stall_s": 2})
    daemon.start()
    with open(f, "r+b") as fh:  # a program that does not use the library
        fh.write(b"b" * 10)

    def timed_out() -> list[dict[str, Any]]:
        return [e for e in daemon.client.events(f) if e["kind"] == "timeout"]

    [event] = wait_until(timed_out, 30, "the capture's timeout event")
    assert "capture of" in event["message"] and "2 attempt(s)" in event["message"], event
    assert [e["kind"] for e in daemon.client.events(f)].count("retry") >= 1
    wait_until(lambda: daemon.client.status(f)["job_kind"] is None, what="the job to end")
    row = daemon.client.status(f)
    assert (row["last_result"], row["last_job_kind"]) == ("timeout", "capture")
