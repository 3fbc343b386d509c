"""Jobs against a real daemon: what status shows while one runs, the watchdog
killing a hung worker, retries, and the pool staying usable afterwards.

``worker_stall_s`` makes every job's worker sleep before working, like a copy
stuck in the kernel; the tests wait on conditions, never on time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from filetwin.errors import NotFound
from tests.helpers import Daemon, wait_until

FAST = {"retry_backoff_s": 0.05}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def running_job(daemon: Daemon, f: Path) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        try:
            s: dict[str, Any] = daemon.client.status(f)
        except NotFound:  # not registered yet
            return None
        return s if s["job_kind"] == "backup" and s["worker_pid"] else None

    return probe


def background_cli(daemon: Daemon, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "filetwin", "--state-dir", str(daemon.state_dir), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def watch_pids(daemon: Daemon, f: Path, proc: subprocess.Popen[str]) -> list[int]:
    """Worker pids status shows for ``f`` until ``proc`` ends, in order seen."""
    seen: list[int] = []

    def done() -> bool:
        pid = daemon.client.status(f)["worker_pid"]
        if pid and pid not in seen:
            seen.append(pid)
        return proc.poll() is not None

    wait_until(done, 60, "the command to finish")
    return seen


def test_status_shows_running_job(make_daemon: Callable[..., Daemon], files: Path) -> None:
    daemon = make_daemon(worker_stall_s=1.5)
    f = files / "slow.txt"
    f.write_text("content\n")
    with ThreadPoolExecutor(1) as ex:
        adding = ex.submit(daemon.client.add, f)
        s = wait_until(running_job(daemon, f), what="a running backup job in status")
        pid = s["worker_pid"]
        assert alive(pid)
        # The worker is the daemon's own child process.
        assert parent_of(pid) == daemon.pid
        assert s["job_started_at"] is not None
        assert s["job_started_at"].endswith(("Z", "+00:00"))
        result = adding.result(30)
    assert result["failures"] == []
    after = daemon.client.status(f)
    assert (after["job_kind"], after["worker_pid"], after["job_started_at"]) == (None, None, None)
    assert after["last_result"] == "ok"
    assert alive(pid), "a worker that finished its job stays in the pool"


def test_hung_job_is_killed_retried_and_reported(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    daemon = make_daemon(worker_stall_s=60, workers=1, **FAST)
    f = files / "hang.txt"
    f.write_text("stuck\n")

    # add under a hung worker: the entry is registered, its first copy times out.
    r = daemon.cli("add", str(f), "--timeout", "1", "--retries", "0")
    assert r.returncode == 1
    assert str(f) in r.stderr and "timed out" in r.stderr, r.stderr
    s = daemon.client.status(f)
    assert s["last_result"] == "timeout" and s["state"] == "watching"
    assert s["job_kind"] is None and s["worker_pid"] is None
    assert daemon.client.history(f) == []

    assert daemon.cli("update", str(f), "--retries", "1").returncode == 0
    mark = daemon.client.events(f)[-1]["id"]
    proc = background_cli(daemon, "backup", str(f))
    pids = watch_pids(daemon, f, proc)
    assert proc.returncode == 1, proc.stdout.read() if proc.stdout else ""
    # Two attempts, each in its own worker; the watchdog killed both.
    assert len(pids) == 2, pids
    wait_until(lambda: not any(alive(p) for p in pids), what=f"killed workers {pids} to be gone")
    kinds = [e["kind"] for e in daemon.client.events(f, after=mark)]
    assert [k for k in kinds if k in ("retry", "timeout")] == ["retry", "timeout"], kinds
    timeout_event = daemon.client.events(f, after=mark)[-1]
    assert timeout_event["ok"] is False and "2 attempt(s)" in timeout_event["message"]
    s = daemon.client.status(f)
    assert s["last_result"] == "timeout" and "timed out" in s["last_error"]

    # The one-worker pool replaced the killed worker: the next job gets a live one.
    assert daemon.cli("update", str(f), "--retries", "0").returncode == 0
    proc = background_cli(daemon, "backup", str(f))
    fresh = wait_until(running_job(daemon, f), what="the next job to start")["worker_pid"]
    assert fresh not in pids and alive(fresh)
    proc.wait(30)
    assert proc.returncode == 1


def test_worker_dying_mid_job_is_retried(make_daemon: Callable[..., Daemon], files: Path) -> None:
    daemon = make_daemon(worker_stall_s=1, workers=1, **FAST)
    f = files / "crash.txt"
    f.write_text("one\n")
    daemon.client.add(f)
    mark = daemon.client.events(f)[-1]["id"]
    f.write_text("two\n")
    pid = wait_until(running_job(daemon, f), what="a backup job")["worker_pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: [e["kind"] for e in daemon.client.events(f, after=mark)][-1:] == ["backup"],
        what="the retried job's version",
    )
    kinds = [e["kind"] for e in daemon.client.events(f, after=mark)]
    assert kinds == ["retry", "backup"], kinds
    assert "died" in daemon.client.events(f, after=mark)[0]["message"]
    assert len(daemon.client.history(f)) == 2
    assert daemon.client.status(f)["last_result"] == "ok"


def test_worker_killed_while_idle_is_replaced(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    daemon = make_daemon(worker_stall_s=0.5, workers=1, **FAST)
    f = files / "idle.txt"
    f.write_text("one\n")
    with ThreadPoolExecutor(1) as ex:
        adding = ex.submit(daemon.client.add, f)
        pid = wait_until(running_job(daemon, f), what="the first job")["worker_pid"]
        adding.result(30)
    os.kill(pid, signal.SIGKILL)  # e.g. the OOM killer, between jobs
    wait_until(lambda: not alive(pid), what="the worker to be gone")
    f.write_text("two\n")
    wait_until(lambda: daemon.client.status(f)["versions"] == 2, what="a version after the kill")
    s = daemon.client.status(f)
    assert s["last_result"] == "ok" and s["job_kind"] is None
    assert len(daemon.client.history(f)) == 2
    assert daemon.client.backup(f)["unchanged"] is True


def test_backup_command_takes_manual_version(daemon: Daemon, files: Path) -> None:
    f = files / "manual.txt"
    f.write_text("a\n")
    daemon.client.add(f)
    r = daemon.cli("backup", str(f))
    assert r.returncode == 0, r.stderr
    assert "same content" in r.stdout
    history = daemon.client.history(f)
    assert [v["cause"] for v in history] == ["initial", "manual"]
    assert history[-1]["unchanged"] is True
