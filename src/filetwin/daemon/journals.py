"""The open journals of on-write entries, owned by the daemon's event loop.

``append`` returns a record's sequence number once the record is as durable
as the entry's sync mode promises: ``always`` fdatasyncs first (in a thread,
so the loop keeps serving); ``batch`` returns at once, the record already in
the kernel (it survives the daemon dying), and a timer syncs it within
``batch_window_s`` (it then survives the machine dying).

Appends to one entry's journal are serialised by that entry's lock (FIFO), so
a batch (a capture's records) is never interleaved with another writer's
records. A failed append or sync is reported through ``on_failed`` (the
daemon turns it into an event), and the failed writer is closed: the next
append opens the journal afresh, after its last valid record. A failed sync
is never retried into a success: ``on_failed`` is told whether acknowledged
records lost their durability (``batch`` mode), so protection can be
re-established with a fresh version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import RepositoryError
from ..repo.journal import JournalWriter
from ..repo.moments import journal_dir

log = logging.getLogger("filetwin.journals")

T = TypeVar("T")
#: the most retries one append may ask for
MAX_RETRIES = 10


class Journals:
    def __init__(
        self,
        root: Path,
        batch_window_s: float,
        clock: Callable[[], float] = time.time,
        on_torn: Callable[[str, str], None] | None = None,
        *,
        floor: Callable[[str], int] | None = None,
        on_failed: Callable[[str, str, bool], None] | None = None,
        on_gap: Callable[[str, str], None] | None = None,
        retry_backoff_s: float = 0.05,
    ) -> None:
        """``floor(path)``: the last seq a version of the entry stands for (no new record
        may take it). ``on_failed(path, message, durability_lost)``: an append or sync
        failed. ``on_gap(path, message)``: the journal found at open has a damaged
        stretch no version covers (replay cannot cross it until a new version is taken).
        """
        self.root = root
        self.batch_window_s = batch_window_s
        self.clock = clock
        self.retry_backoff_s = retry_backoff_s
        self._writers: dict[str, JournalWriter] = {}
        self._modes: dict[str, str] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._on_torn = on_torn
        self._floor = floor
        self._on_failed = on_failed
        self._on_gap = on_gap
        #: told (path, seq) once records up to seq are acknowledged (the replicator)
        self.on_appended: Callable[[str, int], None] | None = None

    def directory(self, path: str) -> Path:
        return journal_dir(self.root, path)

    def lock(self, path: str) -> asyncio.Lock:
        """The entry's journal lock: held for every append, in arrival order."""
        lock = self._locks.get(path)
        if lock is None:
            lock = self._locks[path] = asyncio.Lock()
        return lock

    def open(self, path: str, sync_mode: str) -> JournalWriter:
        writer = self._writers.get(path)
        if writer is None or self._modes.get(path) != sync_mode:
            if writer is not None:
                self.close(path)
            d = self.directory(path)
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            floor = self._floor(path) if self._floor is not None else 0
            writer = JournalWriter(
                d,
                sync=sync_mode,  # type: ignore[arg-type]
                batch_window_s=self.batch_window_s,
                clock=self.clock,
                floor_seq=floor,
            )
            self._writers[path] = writer
            self._modes[path] = sync_mode
            self._report_open(path, writer, floor)
        return writer

    def _report_open(self, path: str, writer: JournalWriter, floor: int) -> None:
        torn = writer.torn_at_open
        skipped = writer.skipped_at_open
        if torn is not None and self._on_torn is not None:
            self._on_torn(
                path,
                f"the journal of {path} ends in a torn or corrupt record "
                f"({torn.reason} at byte {torn.offset} of {torn.segment.name}); "
                f"replay stops before it, the journal goes on at seq "
                f"{writer.next_seq}",
            )
        if skipped is not None and self._on_torn is not None:
            self._on_torn(
                path,
                f"the journal of {path} holds records only up to {skipped[0] - 1}, but "
                f"a version stands for seq {floor}: it goes on at seq {writer.next_seq} "
                f"and never reuses seqs {skipped[0]}..{skipped[1]}",
            )
        uncovered = [g for g in writer.gaps_at_open if g[1] > floor]
        if uncovered and self._on_gap is not None:
            spans = ", ".join(f"{a}..{b}" for a, b in uncovered)
            self._on_gap(
                path,
                f"the journal of {path} is damaged: records {spans} are missing and no "
                "version covers them; a moment across them cannot be rebuilt",
            )

    def last_seq(self, path: str, sync_mode: str = "batch") -> int:
        return self.open(path, sync_mode).next_seq - 1

    def known_last_seq(self, path: str) -> int | None:
        """The last seq of an open journal, without opening one."""
        writer = self._writers.get(path)
        return None if writer is None else writer.next_seq - 1

    async def append(
        self,
        path: str,
        sync_mode: str,
        op: Callable[[JournalWriter], T],
        retries: int = 0,
        guard: Callable[[JournalWriter], bool] | None = None,
    ) -> T | None:
        """Run ``op`` (one append, or a batch with ``append_many``) on the entry's writer
        under its journal lock; return its result once durable per ``sync_mode``.

        ``guard(writer)``, checked under the lock right before ``op``: False skips
        ``op`` and returns None. A failure is reported (``on_failed``), the writer
        closed, and the append tried again on a reopened journal up to ``retries``
        times (with backoff) before the RepositoryError is raised.
        """
        retries = max(0, min(retries, MAX_RETRIES))
        async with self.lock(path):
            attempt = 0
            while True:
                writer: JournalWriter | None = None
                try:
                    writer = self.open(path, sync_mode)
                    if guard is not None and not guard(writer):
                        return None
                    if sync_mode == "always":
                        result = await asyncio.to_thread(op, writer)
                    else:
                        result = op(writer)
                        self._arm(path, writer)
                    if self.on_appended is not None:
                        self.on_appended(path, writer.next_seq - 1)
                    return result
                except RepositoryError as e:
                    self._failed(path, writer, f"appending to the journal of {path} failed: {e}")
                    if attempt >= retries:
                        raise
                attempt += 1
                await asyncio.sleep(self.retry_backoff_s * 2 ** (attempt - 1))

    def _failed(self, path: str, writer: JournalWriter | None, message: str) -> None:
        """Close the failed writer (the next append reopens the journal) and report."""
        lost = (
            writer is not None
            and writer.sync_mode == "batch"
            and "sync failed" in (writer.failure or "")
        )
        if writer is not None and self._writers.get(path) is writer:
            self.close(path)
        log.error("%s", message)
        if self._on_failed is not None:
            self._on_failed(path, message, lost)

    def _arm(self, path: str, writer: JournalWriter) -> None:
        if path in self._timers or writer.flush_deadline is None:
            return
        delay = max(0.0, writer.flush_deadline - self.clock())
        loop = asyncio.get_running_loop()
        self._timers[path] = loop.call_later(delay, self._flush, path)

    def _flush(self, path: str) -> None:
        self._timers.pop(path, None)
        writer = self._writers.get(path)
        if writer is None:
            return
        try:
            # A batch sync is a few ms of fdatasync: done on the loop, in order
            # with appends, so durable_seq never runs ahead of the disk.
            if not writer.flush_if_due():
                self._arm(path, writer)
        except RepositoryError as e:
            self._failed(path, writer, f"making the journal of {path} durable failed: {e}")

    async def sync(self, path: str) -> int:
        writer = self._writers.get(path)
        if writer is None:
            return 0
        try:
            return await asyncio.to_thread(writer.sync)
        except RepositoryError as e:
            self._failed(path, writer, f"making the journal of {path} durable failed: {e}")
            raise

    def rotate(self, path: str) -> int:
        writer = self._writers.get(path)
        if writer is None:
            return 0
        try:
            return writer.rotate()
        except RepositoryError as e:
            self._failed(path, writer, f"starting a journal segment of {path} failed: {e}")
            raise

    def close(self, path: str) -> None:
        timer = self._timers.pop(path, None)
        if timer is not None:
            timer.cancel()
        writer = self._writers.pop(path, None)
        self._modes.pop(path, None)
        if writer is not None:
            with contextlib.suppress(RepositoryError):
                writer.close()

    def close_all(self) -> None:
        for path in list(self._writers):
            self.close(path)
