"""A pool of killable worker processes, driven from asyncio.

``ProcessPoolExecutor`` cannot kill one stuck task without breaking the whole
pool, so each worker here is a process with its own pipe. ``run`` hands a job
to an idle worker and waits for the answer under a deadline; past it the
watchdog SIGKILLs that worker, starts a replacement and raises JobTimeout.

Workers are plain child processes (``python -m filetwin.daemon.worker FD``),
not multiprocessing's: its forkserver and resource tracker are helpers whose
own failures (a failed write to the tracker's pipe makes it wait forever on a
tracker that is alive) would wedge the start of every later worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ..errors import JobFailed, JobTimeout


class _Worker:
    def __init__(self, setup: dict[str, Any] | None = None) -> None:
        parent, child = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "filetwin.daemon.worker", str(child.fileno())],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        self.conn = Connection(parent.detach())
        #: packs other workers put, to hand this one before its next job
        self.news: list[dict[str, Any]] = []
        if setup is not None:
            # The first message: what every job needs (unlocked repository keys);
            # the worker answers nothing to it.
            try:
                self.conn.send({"kind": "setup", **setup})
            except OSError:
                self.kill()
                raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self.conn.close()


class WorkerPool:
    """``size`` worker processes; ``run`` is safe to call from many tasks at once."""

    def __init__(self, size: int, setup: dict[str, Any] | None = None) -> None:
        """``setup`` is sent to every worker once, before its first job."""
        self.size = size
        self.setup = setup
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._busy: set[_Worker] = set()
        #: every live worker, idle or busy
        self._all: set[_Worker] = set()
        self._closed = False
        #: told (job, answer) of every answer (the engine makes events of what a
        #: job read from a replica: replicas/fallback.py)
        self.on_answer: Callable[[dict[str, Any], dict[str, Any]], None] | None = None
        #: called with each worker's news (location -> packs it put), on the loop
        self.on_news: Callable[[dict[str, Any]], None] | None = None

    async def start(self) -> None:
        for _ in range(self.size):
            worker = await asyncio.to_thread(_Worker, self.setup)
            self._all.add(worker)
            self._idle.put_nowait(worker)

    async def run(
        self,
        job: dict[str, Any],
        timeout: float,
        on_start: Callable[[int], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Run ``job`` in a worker; return its answer dict. ``on_progress(bytes)``
        is called for each progress message the worker sends before its answer.

        Raises JobTimeout when the deadline passes (the worker is killed and
        replaced) and JobFailed when the worker dies.
        """
        worker = await self._idle.get()
        self._busy.add(worker)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[dict[str, Any]] = loop.create_future()

        def readable() -> None:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError) as e:
                loop.remove_reader(worker.conn.fileno())
                answer.set_exception(JobFailed(f"worker {worker.pid} died: {e!r}"))
                return
            if isinstance(message, dict) and set(message) == {"progress"}:
                if on_progress is not None:
                    on_progress(int(message["progress"]))
                return  # the answer is still to come
            loop.remove_reader(worker.conn.fileno())
            if isinstance(message, dict) and "news" in message:
                # Packs this worker put: the others dedup against them too,
                # without listing the repository before every job.
                news = message.pop("news")
                for other in self._all - {worker}:
                    other.news.append(news)
                if self.on_news is not None:
                    self.on_news(news)
            if not answer.done():
                answer.set_result(message)

        try:
            if not worker.is_alive():
                # Killed while idle (OOM killer, a person): the job has not run
                # anywhere, so it simply goes to a fresh worker.
                worker = await self._replace(worker)
            try:
                if worker.news:
                    worker.conn.send({"kind": "adopt", "news": _merged(worker.news)})
                    worker.news = []
                worker.conn.send(job)
            except OSError as e:
                pid = worker.pid
                worker = await self._replace(worker)
                raise JobFailed(f"could not hand the job to worker {pid}: {e}") from e
            if on_start is not None:
                on_start(worker.pid)
            loop.add_reader(worker.conn.fileno(), readable)
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                # cancellation that lands in the same step as the answer.
                async with asyncio.timeout(timeout):
                    result = await answer
                if self.on_answer is not None:
                    self.on_answer(job, result)
            except TimeoutError:
                loop.remove_reader(worker.conn.fileno())
                pid = worker.pid
                worker = await self._replace(worker)
                raise JobTimeout(
                    f"timed out: the job ran past its {timeout:g} s deadline; "
                    f"worker {pid} was killed"
                ) from None
            except JobFailed:
                worker = await self._replace(worker)
                raise
            except asyncio.CancelledError:
                loop.remove_reader(worker.conn.fileno())
                worker = await self._replace(worker)
                raise
            return result
        finally:
            self._busy.discard(worker)
            if self._closed:
                worker.kill()
            else:
                self._idle.put_nowait(worker)

    async def _replace(self, worker: _Worker) -> _Worker:
        self._busy.discard(worker)
        self._all.discard(worker)
        worker.kill()
        fresh = await asyncio.to_thread(_Worker, self.setup)
        self._all.add(fresh)
        self._busy.add(fresh)
        return fresh

    async def close(self) -> None:
        self._closed = True
        while not self._idle.empty():
            self._idle.get_nowait().kill()
        for worker in list(self._busy):
            worker.kill()


def _merged(news: list[dict[str, Any]]) -> dict[str, Any]:
    """Several workers' news (location -> packs) as one message's."""
    out: dict[str, list[Any]] = {}
    for item in news:
        for location, packs in item.items():
            out.setdefault(location, []).extend(packs)
    return out
