"""Errors are classified by where they happened (issue: faults and attack).

An error of filetwin's own storage — the repository, the daemon's commit —
is retried and reported, and never touches the user's file: only an error of
the protected file itself may heal it. Every way out of a job ends it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.faults.conftest import FAST, digest, kinds, protect
from tests.faults.strace import inject, injected, worker_pids
from tests.helpers import Daemon, wait_until


def settled(daemon: Daemon, f: Path) -> bool:
    return daemon.client.status(f)["job_kind"] is None


def test_repository_fsync_error_never_heals_the_file(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    # strace counts calls per thread: the fault is lifted (strace detached) after
    # the first injected failure, well before the retry's backoff ends.
    daemon = make_daemon("state", workers=1, timeout_floor_s=10.0, retry_backoff_s=1.0)
    f = files / "doc.txt"
    f.write_bytes(b"version 1\n")
    protect(daemon, f, "on-close", "auto")
    with inject(worker_pids(daemon.pid), "fsync", "EIO", when="1") as log:
        f.write_bytes(b"version 2\n")
        wait_until(lambda: injected(log) >= 1, what="the injected fsync error")
    wait_until(lambda: digest(b"version 2\n") in {v["hash"] for v in daemon.client.history(f)},
               what="version 2, stored on the retry")  # fmt: skip
    assert f.read_bytes() == b"version 2\n"
    seen = kinds(daemon, f)
    assert "retry" in seen
    assert "healed" not in seen and "read-error" not in seen, seen
    assert not (daemon.state_dir / "quarantine").exists() or not any(
        (daemon.state_dir / "quarantine").iterdir()
    )


def test_persistent_repository_error_fails_the_backup_not_the_file(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    daemon = make_daemon("state", workers=1, **FAST)
    f = files / "doc.txt"
    f.write_bytes(b"version 1\n")
    protect(daemon, f, "on-close", "auto")
    with inject(worker_pids(daemon.pid), "fsync", "EIO", when="1+"):
        f.write_bytes(b"version 2\n")
        wait_until(lambda: "backup-failed" in kinds(daemon, f), what="the failed backup")
    wait_until(lambda: settled(daemon, f), what="the job to end")
    row = daemon.client.status(f)
    assert row["last_result"] == "failed" and row["last_job_kind"] == "backup"
    assert f.read_bytes() == b"version 2\n"
    assert "healed" not in kinds(daemon, f)
    # Once the fault is gone the next save is versioned.
    f.write_bytes(b"version 3\n")
    wait_until(lambda: digest(b"version 3\n") in {v["hash"] for v in daemon.client.history(f)},
               what="version 3")  # fmt: skip


def test_failed_manifest_commit_ends_the_job_and_is_retried(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    daemon = make_daemon("state", workers=1, **FAST)
    f = files / "doc.txt"
    f.write_bytes(b"version 1\n")
    protect(daemon, f, "on-close", "manual")
    # The daemon commits manifests (temp file, fsync, rename): fail its renames.
    with inject([daemon.pid], "rename", "EIO", when="1+"):
        f.write_bytes(b"version 2\n")
        wait_until(lambda: "backup-failed" in kinds(daemon, f), what="the failed commit's event")
    wait_until(lambda: settled(daemon, f), what="the job to end")
    row = daemon.client.status(f)
    assert row["last_result"] == "failed" and row["last_job_kind"] == "backup", row
    assert "retry" in kinds(daemon, f)
    f.write_bytes(b"version 3\n")
    wait_until(lambda: digest(b"version 3\n") in {v["hash"] for v in daemon.client.history(f)},
               what="version 3, once the fault is gone")  # fmt: skip
    wait_until(lambda: daemon.client.status(f)["last_result"] == "ok", what="ok")


def test_mid_save_states_never_become_versions(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    """open(O_TRUNC), a pause, then the write: the empty middle is no version."""
    daemon = make_daemon("state", coalesce_ms=5)
    f = files / "slow.txt"
    f.write_bytes(b"start\n")
    protect(daemon, f, "on-close", "manual")
    contents = {b"start\n"}
    stop = threading.Event()

    def saver() -> None:
        for i in range(40):
            data = f"save {i}\n".encode() * 50
            contents.add(data)
            fd = os.open(f, os.O_WRONLY | os.O_TRUNC)
            try:
                time.sleep(0.05)  # the program computing what to write, not a sync
                os.write(fd, data)
            finally:
                os.close(fd)
            if stop.is_set():
                return

    t = threading.Thread(target=saver)
    t.start()
    t.join(120)
    stop.set()
    last = digest(b"save 39\n" * 50)
    wait_until(lambda: last in {v["hash"] for v in daemon.client.history(f)}, 30, "the last save")
    good = {digest(c) for c in contents}
    bad = [v for v in daemon.client.history(f) if v["hash"] not in good]
    assert not bad, f"{len(bad)} versions hold a state no save left: {bad[:3]}"


def test_daemon_write_errors_never_wedge_a_save(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    """Every first write of each daemon thread fails (the pipe to a worker, the
    start of a new worker, the manifest): the save still ends, is retried and
    stored, and the daemon answers once the fault is gone."""
    daemon = make_daemon("state", timeout_floor_s=10.0, retry_backoff_s=0.05)
    f = files / "closed.bin"
    f.write_bytes(b"v1" * 1000)
    protect(daemon, f, "on-close", "auto")
    with inject([daemon.pid], "write", "EIO", when="1") as log:
        with open(f, "r+b") as fh:
            fh.write(b"v2" * 1000)
        wait_until(lambda: injected(log) >= 1, what="an injected write error")
    wait_until(lambda: digest(b"v2" * 1000) in {v["hash"] for v in daemon.client.history(f)},
               30, "the save, stored after retries")  # fmt: skip
    wait_until(lambda: settled(daemon, f), what="the job to end")
    assert f.read_bytes() == b"v2" * 1000
