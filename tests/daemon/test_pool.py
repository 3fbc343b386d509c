"""The worker pool on its own: answers, the watchdog, dead workers, concurrency."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import blake3
import pytest

from filetwin.daemon.pool import WorkerPool
from filetwin.errors import JobFailed, JobTimeout


def with_pool(size: int, body: Callable[[WorkerPool], Awaitable[None]]) -> None:
    async def main() -> None:
        pool = WorkerPool(size)
        await pool.start()
        try:
            await body(pool)
        finally:
            await pool.close()

    asyncio.run(main())


def prepare(path: Path, repo: Path, stall: float = 0) -> dict[str, Any]:
    return {
        "kind": "prepare",
        "path": str(path),
        "cause": "close",
        "repository": str(repo),
        "stall_s": stall,
    }


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie its parent (the pool) has not reaped yet,
    every thread gone (the leader is a zombie while its other threads still exit,
    and until they have, the parent cannot see the death)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z" and threads <= 1


async def until_gone(pid: int) -> None:
    async def poll() -> None:
        while not gone(pid):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), 5)


def test_job_returns_its_answer(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"hello")

    async def body(pool: WorkerPool) -> None:
        pids: list[int] = []
        answer = await pool.run(prepare(f, tmp_path / "repo"), 30, on_start=pids.append)
        assert answer["ok"] is True
        assert answer["manifest"]["hash"] == blake3.blake3(b"hello").hexdigest()
        assert pids and pids[0] != os.getpid() and not gone(pids[0])
        bad = await pool.run({"kind": "nonsense", "repository": str(tmp_path / "repo")}, 30)
        assert bad["ok"] is False and "nonsense" in bad["error"]
        missing = await pool.run(prepare(tmp_path / "absent", tmp_path / "repo"), 30)
        assert missing["ok"] is False and "absent" in missing["error"]

    with_pool(1, body)


def test_stalled_job_times_out_and_worker_is_replaced(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")

    async def body(pool: WorkerPool) -> None:
        pids: list[int] = []
        with pytest.raises(JobTimeout, match="timed out"):
            await pool.run(prepare(f, tmp_path / "repo", stall=60), 0.3, on_start=pids.append)
        await until_gone(pids[0])
        answer = await pool.run(prepare(f, tmp_path / "repo"), 30, on_start=pids.append)
        assert answer["ok"] is True
        assert pids[1] != pids[0] and not gone(pids[1])

    with_pool(1, body)


def test_worker_killed_mid_job_is_job_failed(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")

    async def body(pool: WorkerPool) -> None:
        pids: list[int] = []

        def kill(pid: int) -> None:
            pids.append(pid)
            os.kill(pid, signal.SIGKILL)

        with pytest.raises(JobFailed, match="died"):
            await pool.run(prepare(f, tmp_path / "repo", stall=60), 30, on_start=kill)
        answer = await pool.run(prepare(f, tmp_path / "repo"), 30, on_start=pids.append)
        assert answer["ok"] is True and pids[1] != pids[0]

    with_pool(1, body)


def test_worker_killed_while_idle_is_replaced(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")

    async def body(pool: WorkerPool) -> None:
        pids: list[int] = []
        await pool.run(prepare(f, tmp_path / "repo"), 30, on_start=pids.append)
        os.kill(pids[0], signal.SIGKILL)
        await until_gone(pids[0])
        answer = await pool.run(prepare(f, tmp_path / "repo"), 30, on_start=pids.append)
        assert answer["ok"] is True and pids[1] != pids[0]

    with_pool(1, body)


def test_two_workers_run_two_jobs_at_once(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")

    async def body(pool: WorkerPool) -> None:
        started: dict[int, float] = {}
        finished: list[float] = []

        async def one() -> None:
            job = prepare(f, tmp_path / "repo", stall=1.0)
            await pool.run(job, 30, on_start=lambda pid: started.update({pid: time.monotonic()}))
            finished.append(time.monotonic())

        await asyncio.gather(one(), one())
        assert len(started) == 2  # two distinct workers
        assert max(started.values()) < min(finished)  # the second began before either ended

    with_pool(2, body)


def test_cancelled_job_kills_its_worker(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")

    async def body(pool: WorkerPool) -> None:
        pids: list[int] = []
        task = asyncio.create_task(
            pool.run(prepare(f, tmp_path / "repo", stall=60), 60, on_start=pids.append)
        )
        while not pids:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until_gone(pids[0])
        answer = await pool.run(prepare(f, tmp_path / "repo"), 30)
        assert answer["ok"] is True

    with_pool(1, body)
