"""The open journals of on-write entries, owned by the daemon's event loop.

``append`` returns a record's sequence number once the record is as durable
as the entry's sync mode promises: ``always`` fdatasyncs first (in a thread,
so the loop keeps serving); ``batch`` returns at once, the record already in
the kernel (it survives the daemon dying), and a timer syncs it within
``batch_window_s`` (it then survives the machine dying).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import RepositoryError
from ..repo.journal import JournalWriter
from ..repo.moments import journal_dir

log = logging.getLogger("filetwin.journals")


class Journals:
    def __init__(
        self,
        root: Path,
        batch_window_s: float,
        clock: Callable[[], float] = time.time,
        on_torn: Callable[[str, str], None] | None = None,
    ) -> None:
        self.root = root
        self.batch_window_s = batch_window_s
        self.clock = clock
        self._writers: dict[str, JournalWriter] = {}
        self._modes: dict[str, str] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._on_torn = on_torn

    def directory(self, path: str) -> Path:
        return journal_dir(self.root, path)

    def open(self, path: str, sync_mode: str) -> JournalWriter:
        writer = self._writers.get(path)
        if writer is None or self._modes.get(path) != sync_mode:
            if writer is not None:
                self.close(path)
            d = self.directory(path)
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            writer = JournalWriter(
                d,
                sync=sync_mode,  # type: ignore[arg-type]
                batch_window_s=self.batch_window_s,
                clock=self.clock,
            )
            self._writers[path] = writer
            self._modes[path] = sync_mode
            torn = writer.torn_at_open
            if torn is not None and self._on_torn is not None:
                self._on_torn(
                    path,
                    f"the journal of {path} ends in a torn or corrupt record "
                    f"({torn.reason} at byte {torn.offset} of {torn.segment.name}); "
                    f"replay stops before it, the journal goes on at seq "
                    f"{writer.next_seq}",
                )
        return writer

    def last_seq(self, path: str, sync_mode: str = "batch") -> int:
        return self.open(path, sync_mode).next_seq - 1

    def known_last_seq(self, path: str) -> int | None:
        """The last seq of an open journal, without opening one."""
        writer = self._writers.get(path)
        return None if writer is None else writer.next_seq - 1

    async def append(self, path: str, sync_mode: str, op: Callable[[JournalWriter], int]) -> int:
        writer = self.open(path, sync_mode)
        if sync_mode == "always":
            return await asyncio.to_thread(op, writer)
        seq = op(writer)
        self._arm(path, writer)
        return seq

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
            log.error("journal of %s: %s", path, e)

    async def sync(self, path: str) -> int:
        writer = self._writers.get(path)
        if writer is None:
            return 0
        return await asyncio.to_thread(writer.sync)

    def rotate(self, path: str) -> int:
        writer = self._writers.get(path)
        return 0 if writer is None else writer.rotate()

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
