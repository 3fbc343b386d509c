"""The on-write side of the engine: journal records, captures and checkpoints.

Records come from three capture sources: the API (report-write and the
stream socket, used by ``filetwin.open``), and the watcher's delta capture
for programs that use neither. Each successful close, and a journal past its
size or record threshold, folds the journal into a ``checkpoint`` version.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

from ..errors import FiletwinError, JobFailed, UsageError, error_from
from ..repo.journal import drop_segments_before
from ..repo.moments import JOURNAL_BASES
from ..repo.repository import Manifest, entry_key
from .journals import Journals

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("filetwin.onwrite")

KINDS = ("write", "truncate", "close-ok", "close-failed", "mark")


class OnWrite:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        config = engine.config
        self.journals = Journals(
            config.journals_dir,
            config.journal_batch_window_s,
            engine.clock,
            on_torn=lambda path, message: engine.emit(path, "journal-torn", False, message),
        )
        self._since_checkpoint: dict[str, tuple[int, int]] = {}  # records, bytes
        self._checkpointing: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        #: entries whose writes came through the API since the last delta capture
        self.api_dirty: set[str] = set()
        self._rows: dict[str, dict[str, Any]] = {}
        #: open write streams per entry (filetwin.open, the interceptor)
        self.streams: dict[str, int] = {}

    def open_journals(self) -> None:
        """Open the journal of every on-write entry (reports torn tails as events).

        Called at start, so a torn tail left by a crash is reported then, not
        whenever the entry is next written."""
        for row in self.engine.table.all():
            if row["backup_mode"] == "on-write":
                try:
                    self.journals.open(row["path"], row["sync_mode"])
                except FiletwinError as e:
                    log.error("journal of %s: %s", row["path"], e)

    # A write stream's writes reach the file after their records: a delta
    # capture meanwhile could read a block before such a write lands and journal
    # its old content after the write's record. So while a stream is open,
    # captures only refresh the shadow, and its end is followed by one more.
    def stream_opened(self, path: str) -> None:
        self.streams[path] = self.streams.get(path, 0) + 1

    def stream_closed(self, path: str) -> None:
        left = self.streams.get(path, 0) - 1
        if left > 0:
            self.streams[path] = left
            return
        self.streams.pop(path, None)
        self.api_dirty.add(path)
        sup = self.engine.supervisors.get(path)
        if sup is not None:
            sup.poke()

    def _row(self, path: str) -> dict[str, Any]:
        """The entry's row, checked to be journaling; cached because a busy
        writer sends thousands of records a second (``forget_policy`` drops it
        when a change is applied)."""
        row = self._rows.get(path)
        if row is None:
            row = self.engine.entry(path)
            if row["backup_mode"] != "on-write":
                raise UsageError(
                    f"{path} is an on-close entry: its writes are not journaled "
                    f"(`filetwin update {path} --backup on-write` to journal them)"
                )
            if row["state"] == "paused":
                raise UsageError(f"{path} is paused; its writes are not journaled")
            self._rows[path] = row
        return row

    def forget_policy(self, path: str) -> None:
        self._rows.pop(path, None)

    def shadow_path(self, path: str) -> str:
        return str(self.engine.config.state_dir / "shadows" / entry_key(path))

    # records -----------------------------------------------------------
    async def record(
        self,
        path: str,
        kind: str,
        offset: int = 0,
        data: bytes = b"",
        name: str = "",
        source: str = "api",
    ) -> int:
        """Append one record; return its seq once durable per the entry's sync mode."""
        if kind not in KINDS:
            raise UsageError(f"unknown record kind {kind!r}; expected one of {', '.join(KINDS)}")
        if offset < 0 or offset >= 1 << 63:
            raise UsageError(f"offset {offset} is out of range")
        row = self._row(path)
        if kind == "write":
            seq = await self.journals.append(
                path, row["sync_mode"], lambda w: w.append_write(offset, data)
            )
        elif kind == "truncate":
            seq = await self.journals.append(
                path, row["sync_mode"], lambda w: w.append_truncate(offset)
            )
        elif kind in ("close-ok", "close-failed"):
            seq = await self.journals.append(
                path, row["sync_mode"], lambda w: w.append_close(kind == "close-ok")
            )
        else:
            if not name:
                raise UsageError("a mark needs a name")
            seq = await self.journals.append(path, row["sync_mode"], lambda w: w.append_mark(name))
        if source == "api":
            self.api_dirty.add(path)
        records, nbytes = self._since_checkpoint.get(path, (0, 0))
        records, nbytes = records + 1, nbytes + len(data)
        self._since_checkpoint[path] = (records, nbytes)
        config = self.engine.config
        if kind in ("close-ok", "close-failed", "mark"):
            # The table's copy of the journal position (status of every entry
            # reads it) moves at closes and marks, not at every write.
            self.engine.table.set(path, journal_seq=seq)
        if kind == "close-failed":
            self.engine.emit(
                path, "close-failed", False, f"a close of {path} failed (journal record {seq})"
            )
            if row["recovery_mode"] == "auto":
                # The writes since the open are in the journal: put them back.
                self.engine.schedule_heal(path, f"a close failed (journal record {seq})")
        if (
            kind == "close-ok"
            or records >= config.checkpoint_records
            or nbytes >= config.checkpoint_bytes
        ):
            self.schedule_checkpoint(path)
        return seq

    def last_seq(self, path: str) -> int:
        row = self.engine.entry(path)
        return self.journals.last_seq(path, row["sync_mode"])

    # capture without the library ----------------------------------------
    async def capture(self, path: str, closed: bool) -> None:
        """Turn the changes since the last capture into records (see capture/delta.py)."""
        row = self.engine.table.get(path)
        if row is None or row["backup_mode"] != "on-write":
            return
        if not os.path.exists(path):
            self.engine._set_missing(path)
            return
        if row["state"] == "missing":
            self.engine.table.set(path, state="watching")
            self.engine.emit(path, "returned", True, f"{path} is back")
        streaming = self.streams.get(path, 0) > 0
        emit = path not in self.api_dirty and not streaming
        if not streaming:
            self.api_dirty.discard(path)
        answer = await self.engine.pool.run(
            {
                "kind": "diff",
                "path": path,
                "shadow": self.shadow_path(path),
                "emit": emit,
                "repository": self.engine.config.repository_location,
            },
            timeout=self.engine.config.timeout_floor_s
            + os.path.getsize(path) / (self.engine.config.timeout_rate),
        )
        if not answer["ok"]:
            self.engine.emit(
                path, "capture-failed", False, f"capture of {path} failed: {answer['error']}"
            )
            return
        if answer.get("suspect"):
            self.engine._corrupt(
                path,
                row,
                "its content changed but its size and mtime did "
                "not (silent corruption); not journaled",
            )
            return
        if not emit or path in self.api_dirty or self.streams.get(path, 0) > 0:
            # Records came through the API while the file was read: they, not a
            # delta that may hold a block from before their writes, tell the story.
            return
        if answer["new_size"] != answer["old_size"]:
            await self.record(path, "truncate", answer["new_size"], source="watcher")
        for offset, data in answer["writes"]:
            await self.record(path, "write", offset, data, source="watcher")
        if closed:
            await self.record(path, "close-ok", source="watcher")

    async def refresh_shadow(self, path: str) -> None:
        await self.engine.pool.run(
            {
                "kind": "diff",
                "path": path,
                "shadow": self.shadow_path(path),
                "emit": False,
                "repository": self.engine.config.repository_location,
            },
            timeout=self.engine.config.timeout_floor_s
            + os.path.getsize(path) / (self.engine.config.timeout_rate),
        )

    # checkpoints -------------------------------------------------------
    def schedule_checkpoint(self, path: str) -> None:
        running = self._checkpointing.get(path)
        if running is not None and not running.done():
            self._again.add(path)
            return
        self._checkpointing[path] = asyncio.create_task(self._checkpoint_loop(path))

    async def _checkpoint_loop(self, path: str) -> None:
        while True:
            self._again.discard(path)
            try:
                await self.checkpoint(path)
            except FiletwinError as e:
                log.warning("checkpoint of %s: %s", path, e)
            if path not in self._again:
                return

    async def checkpoint(self, path: str) -> Manifest | None:
        """Fold the journal so far into a version; None when nothing is new."""
        engine = self.engine
        sup = engine.supervisors.get(path)
        lock = sup.lock if sup is not None else asyncio.Lock()
        async with lock:
            row = engine.table.get(path)
            if row is None or row["backup_mode"] != "on-write":
                return None
            upto = self.journals.known_last_seq(path)
            latest = await asyncio.to_thread(engine.repo.latest, path)
            if upto is None or latest is None or upto <= latest.journal_seq:
                return None
            await self.journals.sync(path)
            self.journals.rotate(path)
            self._since_checkpoint[path] = (0, 0)
            engine.table.start_job(path, "checkpoint")
            job = {
                "kind": "checkpoint",
                "path": path,
                "upto_seq": upto,
                "journal_dir": str(self.journals.directory(path)),
                "tmp_dir": str(engine.config.state_dir / "tmp"),
                "repository": engine.config.repository_location,
                "stall_s": engine.config.worker_stall_s,
            }
            async with engine.gate.shared():
                try:
                    answer = await engine.pool.run(
                        job,
                        engine.config.timeout_floor_s
                        + (row["size"] or 0) / (engine.config.timeout_rate),
                        on_start=lambda pid: engine.table.set(path, worker_pid=pid),
                    )
                except JobFailed as e:
                    answer = {"ok": False, "error": str(e), "type": type(e).__name__}
                if not answer["ok"]:
                    err = error_from(answer.get("type"), answer["error"])
                    engine.table.end_job(path, last_result="failed", last_error=str(err))
                    engine.emit(
                        path, "checkpoint-failed", False, f"checkpoint of {path} failed: {err}"
                    )
                    raise err
                manifest = Manifest.from_json(answer["manifest"])
                manifest = await asyncio.to_thread(engine.repo.commit, manifest)
            engine.table.set(path, journal_seq=upto)
            await engine._after_commit(path, manifest, row)
            await asyncio.to_thread(self._drop_unneeded_segments, path)
            return manifest

    def _drop_unneeded_segments(self, path: str) -> None:
        """Keep every segment a version inside the retention window still needs."""
        bases = [m for m in self.engine.repo.versions(path) if m.cause in JOURNAL_BASES]
        if bases:
            drop_segments_before(self.journals.directory(path), bases[0].journal_seq + 1)

    def forget(self, path: str) -> None:
        self.forget_policy(path)
        self.journals.close(path)
        self.streams.pop(path, None)
        self._since_checkpoint.pop(path, None)
        self.api_dirty.discard(path)
