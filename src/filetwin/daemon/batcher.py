"""First versions of many small files, prepared together so that they share packs.

An ``add`` of a directory's worth of files starts one backup job per file, all
at once. Each job alone would put a pack of its own (one durable put, on S3 one
request, per file) and look the repository up on its own. The batcher sits
between the job runner and the worker pool: ``prepare`` jobs marked batchable
that arrive within ``window_s`` of each other are sent to one worker as one
``prepare-batch`` job (worker.py, Repository.prepare_files), and each job gets
back exactly the answer its own ``prepare`` job would have given. Everything
per entry stays per entry: its lock, its job columns, its ``finish`` (the
generation check, the commit), its retries and events.

Contract of ``run``: as ``WorkerPool.run`` for the job given. A failure of the
batch as a whole (the worker died, the deadline passed, a store failed) is the
failure of every job in it; a file's own failure (it cannot be read) is that
job's alone. A batch of one is sent as the job itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .pool import WorkerPool

#: how long the first job of a batch waits for others to join it (seconds)
WINDOW_S = 0.02
#: at most this many files in one batch ...
MAX_FILES = 64
#: ... and at most this many bytes (a few packs: the batch's deadline stays short)
MAX_BYTES = 64 * 1024 * 1024
#: only files at most this big are batched: a bigger one fills packs of its own
MAX_FILE_BYTES = 4 * 1024 * 1024


@dataclass
class _Item:
    work: dict[str, Any]
    size: int
    timeout: float
    on_start: Callable[[int], None] | None
    on_progress: Callable[[int], None] | None
    answer: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class PrepareBatcher:
    """Gathers batchable ``prepare`` jobs into ``prepare-batch`` jobs (module doc)."""

    def __init__(
        self,
        pool: WorkerPool,
        rate: float,
        *,
        window_s: float = WINDOW_S,
        max_files: int = MAX_FILES,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        """``rate``: the bytes per second a job's deadline allows for (the
        config's ``timeout_rate``); a batch's deadline is its longest job's plus
        the others' bytes at that rate."""
        self.pool = pool
        self.rate = rate
        self.window_s = window_s
        self.max_files = max_files
        self.max_bytes = max_bytes
        self._open: list[_Item] = []
        self._open_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def batchable(size: int, policy_timeout: float | None) -> bool:
        """Whether a first version of a file of ``size`` bytes may join a batch:
        a small file, under no deadline of its own (the batch's is shared)."""
        return size <= MAX_FILE_BYTES and policy_timeout is None

    async def run(
        self,
        work: dict[str, Any],
        size: int,
        timeout: float,
        on_start: Callable[[int], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """The answer to ``prepare`` job ``work`` (of a file of ``size`` bytes,
        with deadline ``timeout`` were it alone), run in a batch with others."""
        item = _Item(work, size, timeout, on_start, on_progress)
        # Read the outcome even if the caller stopped waiting (no "never retrieved").
        item.answer.add_done_callback(lambda f: f.cancelled() or f.exception())
        if self._open and (
            len(self._open) >= self.max_files or self._open_bytes + size > self.max_bytes
        ):
            self._dispatch()
        self._open.append(item)
        self._open_bytes += size
        if len(self._open) >= self.max_files:
            self._dispatch()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.window_s, self._dispatch)
        # A caller cancelled (its entry removed, the daemon stopping) only stops
        # waiting: the batch goes on for the others, and what it stored for this
        # file is referenced by nothing (gc removes it).
        return await asyncio.shield(item.answer)

    def _dispatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._open, self._open_bytes = self._open, [], 0
        if batch:
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[_Item]) -> None:
        try:
            if len(batch) == 1:
                one = batch[0]
                answer = await self.pool.run(one.work, one.timeout, one.on_start, one.on_progress)
                _deliver(one, answer)
                return
            answer = await self.pool.run(
                self._batch_work(batch), self._deadline(batch), _fan_out(batch)
            )
        except Exception as e:  # the batch failed as a whole: so did each job
            for item in batch:
                if not item.answer.done():
                    item.answer.set_exception(e)
            return
        except BaseException:  # cancelled (the daemon stopping): so is each job
            for item in batch:
                item.answer.cancel()
            raise
        answers = answer.get("answers") if answer.get("ok") else None
        if answers is None or len(answers) != len(batch):
            for item in batch:
                _deliver(item, answer if not answer.get("ok") else _malformed(answer))
            return
        for item, one in zip(batch, answers, strict=True):
            _deliver(item, one)

    @staticmethod
    def _batch_work(batch: list[_Item]) -> dict[str, Any]:
        first = batch[0].work
        return {
            "kind": "prepare-batch",
            "cause": first["cause"],
            "repository": first["repository"],
            "stall_s": first.get("stall_s"),
            # the first file's path names the batch in messages about it
            "path": first["path"],
            "files": [
                {
                    "path": item.work["path"],
                    "journal_seq": item.work.get("journal_seq") or 0,
                    "new": bool(item.work.get("new")),
                }
                for item in batch
            ],
        }

    def _deadline(self, batch: list[_Item]) -> float:
        longest = max(batch, key=lambda item: item.timeout)
        others = sum(item.size for item in batch) - longest.size
        return longest.timeout + others / self.rate


def _deliver(item: _Item, answer: dict[str, Any]) -> None:
    if not item.answer.done():
        item.answer.set_result(answer)


def _fan_out(batch: list[_Item]) -> Callable[[int], None]:
    def started(pid: int) -> None:
        for item in batch:
            if item.on_start is not None:
                item.on_start(pid)

    return started


def _malformed(answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "ok": False,
        "error": f"internal error: a batch answer without one answer per file ({answer!r:.200})",
        "type": "FiletwinError",
    }
