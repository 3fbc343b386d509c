"""The on-write side of the engine: journal records, captures and checkpoints.

Records come from three capture sources: the API (report-write and the
stream socket, used by ``filetwin.open``), and the watcher's delta capture
for programs that use neither. Each successful close, and a journal past its
size or record threshold, folds the journal into a ``checkpoint`` version.

Records are checked at this boundary (an offset or size no file system of
the file can hold is refused), so one bogus record never poisons an entry.
A journal that fails (an append, a sync) is an event; when acknowledged
records lost their durability, or the journal found at open has a damaged
stretch no version covers, a fresh version re-establishes protection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..config import Config
from ..errors import FiletwinError, RepositoryError, UnsafePath, UsageError
from ..repo.journal import drop_segments_before
from ..repo.manifest import Manifest, entry_key
from ..repo.moments import JOURNAL_BASES
from ..repo.repository import Repository
from ..table import Table
from .jobs import Done, Job, JobRunner
from .journals import Journals

log = logging.getLogger("filetwin.onwrite")


class OnWriteHost(Protocol):
    """What the on-write side needs of the engine that wires it (public calls only)."""

    config: Config
    table: Table
    repo: Repository
    jobs: JobRunner

    def clock(self) -> float: ...

    def emit(self, path: str | None, kind: str, ok: bool, message: str) -> None: ...

    def lock_of(self, path: str) -> asyncio.Lock:
        """The entry's lock, held by each of its jobs."""

    def poke(self, path: str) -> None:
        """Ask the entry's supervisor to look at the file soon."""

    def set_missing(self, path: str) -> None:
        """Record that the file is gone."""

    def corrupt(self, path: str, row: dict[str, Any], detail: str) -> None:
        """Report corruption a capture found (and heal an auto entry)."""

    def schedule_heal(self, path: str, reason: str, told: bool = False) -> None: ...

    def close_reported(self, path: str, ok: bool) -> None:
        """A close of an on-close entry, reported by the library or the interceptor."""

    async def backup(self, path: str, cause: str, explicit: bool) -> Manifest | None: ...

    def committed_fields(self, path: str, manifest: Manifest) -> dict[str, Any]:
        """The table fields a committed version sets."""

    async def announce(self, path: str, manifest: Manifest, row: dict[str, Any]) -> None:
        """The event of a committed version, then retention."""


KINDS = ("write", "truncate", "close-ok", "close-failed", "mark")
#: the largest file a record may describe, whatever the file system says: ext4's
#: limit with 4 KiB blocks (16 TiB), and more than any file filetwin can fold
MAX_FILE_SIZE = 1 << 44


class OnWrite:
    def __init__(self, engine: OnWriteHost) -> None:
        self.engine = engine
        config = engine.config
        self.journals = Journals(
            config.journals_dir,
            config.journal_batch_window_s,
            engine.clock,
            on_torn=self._journal_torn,
            floor=self._covered_seq,
            on_failed=self._journal_failed,
            on_gap=self._journal_gap,
            retry_backoff_s=config.retry_backoff_s,
        )
        self._since_checkpoint: dict[str, tuple[int, int]] = {}  # records, bytes
        self._checkpointing: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        #: entries whose writes came through the API since the last delta capture
        self.api_dirty: set[str] = set()
        self._rows: dict[str, dict[str, Any]] = {}
        #: open write streams per entry (filetwin.open, the interceptor)
        self.streams: dict[str, int] = {}
        #: entries whose journal cannot be folded until a version from the live file
        #: is taken (a damaged stretch no version covers)
        self._broken: set[str] = set()
        self._max_size: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: while the journals are opened at start, fresh versions are collected
        #: here and taken before the daemon serves (no new write can race them)
        self._opening: set[str] | None = None

    # journal health ----------------------------------------------------
    def _covered_seq(self, path: str) -> int:
        """The last seq the entry's newest version stands for: never given to a new record."""
        latest = self.engine.repo.latest(path)
        return 0 if latest is None else latest.journal_seq

    def _journal_failed(self, path: str, message: str, durability_lost: bool) -> None:
        self.engine.emit(path, "journal-failed", False, message)
        if durability_lost:
            why = (
                f"{message}; writes acknowledged since the last good sync may not survive "
                "a power loss: taking a fresh version"
            )
            self.engine.table.set(path, last_error=why)
            self.engine.emit(path, "degraded", False, why)
            self._fresh_version(path)

    def _journal_gap(self, path: str, message: str) -> None:
        self._broken.add(path)
        self.engine.emit(path, "journal-damaged", False, f"{message}; taking a fresh version")
        self._fresh_version(path)

    def _journal_torn(self, path: str, message: str) -> None:
        """A torn or corrupt tail: the acknowledged records cut off it are gone from
        the journal but their writes are in the live file. A version of the live
        file (standing for the last whole record) is the base new records go on
        from; folding the journal as it is would drop those writes."""
        self._broken.add(path)
        self.engine.emit(path, "journal-torn", False, f"{message}; taking a fresh version")
        self._fresh_version(path)

    def _fresh_version(self, path: str) -> None:
        """Re-establish protection: a version of the live file (the journal cannot
        be folded while the entry is broken), in the background; at start, before
        the daemon serves (see open_journals)."""
        if self._opening is not None:
            self._opening.add(path)
            return
        task = asyncio.get_running_loop().create_task(self.fresh_version_now(path))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def fresh_version_now(self, path: str) -> None:
        """Take the fresh version ``_fresh_version`` asked for, and wait for it."""
        try:
            manifest = await self.engine.backup(path, cause="manual", explicit=False)
        except FiletwinError as e:
            self.engine.emit(path, "backup-failed", False, f"a fresh version of {path} failed: {e}")
            return
        if manifest is not None:
            self._broken.discard(path)

    def _limit(self, path: str) -> int:
        """The largest size a record of ``path`` may describe (its file system's limit)."""
        limit = self._max_size.get(path)
        if limit is None:
            limit = min(MAX_FILE_SIZE, self.engine.config.max_file_size)
            for d in (os.path.dirname(path), str(self.engine.config.state_dir)):
                try:
                    bits = os.pathconf(d, "PC_FILESIZEBITS")
                except (OSError, ValueError):
                    continue
                if 0 < bits < 64:
                    limit = min(limit, (1 << (bits - 1)) - 1)
            self._max_size[path] = limit
        return limit

    def _check_bounds(self, path: str, kind: str, offset: int, size: int) -> None:
        limit = self._limit(path)
        largest = (
            f"the largest file filetwin takes ({limit} bytes: the config's max_file_size "
            "or the file system's limit); not journaled"
        )
        if kind == "truncate" and offset > limit:
            raise UsageError(f"a truncate of {path} to {offset} bytes is past {largest}")
        if kind == "write" and offset + size > limit:
            raise UsageError(
                f"a write of {size} bytes at offset {offset} of {path} ends past {largest}"
            )

    def open_journals(self) -> list[str]:
        """Open the journal of every on-write entry (reports torn tails as events).

        Called at start, so a torn tail left by a crash is reported then, not
        whenever the entry is next written. Returns the entries that need a
        fresh version (``fresh_version_now``) before the daemon serves."""
        self._opening = set()
        try:
            for row in self.engine.table.all():
                if row["backup_mode"] == "on-write":
                    try:
                        self.journals.open(row["path"], row["sync_mode"])
                    except FiletwinError as e:
                        log.error("journal of %s: %s", row["path"], e)
            return sorted(self._opening)
        finally:
            self._opening = None

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
        self.engine.poke(path)

    def journaling(self, path: str) -> dict[str, Any]:
        """The entry's row, checked to be journaling; cached because a busy
        writer sends thousands of records a second (``forget_policy`` drops it
        when a change is applied)."""
        row = self._rows.get(path)
        if row is None:
            row = self.engine.table.require(path)
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
        retries: int = 0,
    ) -> int:
        """Append one record; return its seq once durable per the entry's sync mode.

        A close reported for an on-close entry is not journaled (it returns 0):
        see OnWriteHost.close_reported.

        Offsets and sizes the file's file system cannot hold are refused (UsageError).
        A failed append is an event and is tried again on a reopened journal up to
        ``retries`` times (at most journals.MAX_RETRIES) before it is raised.
        """
        if kind not in KINDS:
            raise UsageError(f"unknown record kind {kind!r}; expected one of {', '.join(KINDS)}")
        if offset < 0 or offset >= 1 << 63:
            raise UsageError(f"offset {offset} is out of range")
        if not isinstance(retries, int) or retries < 0:
            raise UsageError(f"retries must be a count >= 0, not {retries!r}")
        self._check_bounds(path, kind, offset, len(data))
        if kind in ("close-ok", "close-failed"):
            entry = self._rows.get(path) or self.engine.table.require(path)
            if entry["backup_mode"] != "on-write":
                # An on-close entry has no journal: its close result goes to the
                # engine (a failed close is never stored as a good version).
                self.engine.close_reported(path, kind == "close-ok")
                return 0
        row = self.journaling(path)
        op: Callable[[Any], int]
        if kind == "write":
            op = lambda w: w.append_write(offset, data)  # noqa: E731
        elif kind == "truncate":
            op = lambda w: w.append_truncate(offset)  # noqa: E731
        elif kind in ("close-ok", "close-failed"):
            op = lambda w: w.append_close(kind == "close-ok")  # noqa: E731
        else:
            if not name:
                raise UsageError("a mark needs a name")
            op = lambda w: w.append_mark(name)  # noqa: E731
        seq = await self.journals.append(path, row["sync_mode"], op, retries=retries)
        assert seq is not None
        if source == "api":
            self.api_dirty.add(path)
        self._after_records(path, row, [kind], len(data), seq)
        return seq

    def _after_records(
        self, path: str, row: dict[str, Any], kinds: list[str], nbytes: int, seq: int
    ) -> None:
        """What follows records ending at ``seq``: table, events, heals, checkpoints."""
        records, total = self._since_checkpoint.get(path, (0, 0))
        records, nbytes = records + len(kinds), total + nbytes
        self._since_checkpoint[path] = (records, nbytes)
        kind = kinds[-1]
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
                self.engine.schedule_heal(
                    path, f"a close failed (journal record {seq})", told=True
                )
        if (
            kind == "close-ok"
            or records >= config.checkpoint_records
            or nbytes >= config.checkpoint_bytes
        ):
            self.schedule_checkpoint(path)

    def pending(self, path: str) -> tuple[int, int]:
        """Records and bytes journaled since the entry's last checkpoint (this run)."""
        return self._since_checkpoint.get(path, (0, 0))

    def last_seq(self, path: str) -> int:
        row = self.engine.table.require(path)
        return self.journals.last_seq(path, row["sync_mode"])

    # capture without the library ----------------------------------------
    async def capture(self, path: str, closed: bool) -> None:
        """Turn the changes since the last capture into records (see capture/delta.py).

        The records of one capture are appended as one batch under the entry's journal
        lock, and only if no other record was appended since the file was read: a
        capture that overlapped an API or stream record may hold a block from before
        that record's write, and is discarded (those records tell the story).
        """
        row = self.engine.table.get(path)
        if row is None or row["backup_mode"] != "on-write":
            return
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self.engine.set_missing(path)
            return
        if not stat.S_ISREG(st.st_mode):
            # A symlink (or a FIFO, a device) at the entry's name is never read through.
            self.engine.emit(
                path,
                "unsafe-path",
                False,
                f"{path} is no longer a regular file (a symbolic link or another kind); "
                "not captured",
            )
            return
        if row["state"] == "missing":
            self.engine.table.set(path, state="watching")
            self.engine.emit(path, "returned", True, f"{path} is back")
        streaming = self.streams.get(path, 0) > 0
        emit = path not in self.api_dirty and not streaming
        if not streaming:
            self.api_dirty.discard(path)
        try:
            before = self.journals.last_seq(path, row["sync_mode"])
        except FiletwinError as e:
            self.engine.emit(path, "capture-failed", False, f"capture of {path} failed: {e}")
            return
        answer = await self._diff(path, emit, st.st_size)
        if not answer["ok"]:
            if answer.get("type") == UnsafePath.__name__:
                self.engine.emit(path, "unsafe-path", False, f"{path}: {answer['error']}")
            return
        if answer.get("suspect"):
            self.engine.corrupt(
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
        ops: list[tuple[str, int, bytes]] = []
        if answer["new_size"] != answer["old_size"]:
            ops.append(("truncate", answer["new_size"], b""))
        ops += [("write", offset, bytes(data)) for offset, data in answer["writes"]]
        if closed:
            ops.append(("close-ok", 0, b""))
        if not ops:
            return
        for kind, offset, data in ops:
            self._check_bounds(path, kind, offset, len(data))
        seqs = await self.journals.append(
            path,
            row["sync_mode"],
            lambda w: w.append_many(ops),
            guard=lambda w: w.next_seq - 1 == before,
        )
        if seqs is None:
            log.debug("capture of %s overlapped other records: discarded", path)
            return
        nbytes = sum(len(data) for _k, _o, data in ops)
        self._after_records(path, row, [k for k, _o, _d in ops], nbytes, seqs[-1])

    async def _diff(self, path: str, emit: bool, size: int) -> dict[str, Any]:
        """Run the block-hash delta of ``path`` as a capture job; its worker answer,
        or a failed answer (the job runner has made the failure an event)."""
        config = self.engine.config
        row = self.engine.table.get(path)
        job = Job.for_entry(
            "capture",
            path,
            row,
            config,
            {"kind": "diff", "shadow": self.shadow_path(path), "emit": emit},
            size=size,
            gated=False,
        )

        async def finish(answer: dict[str, Any]) -> Done[dict[str, Any]]:
            return Done(answer)

        try:
            return await self.engine.jobs.run(job, finish)
        except FiletwinError as e:
            return {"ok": False, "error": str(e), "type": type(e).__name__, "reported": True}

    async def refresh_shadow(self, path: str) -> None:
        try:
            size = os.lstat(path).st_size
        except FileNotFoundError:
            return
        answer = await self._diff(path, False, size)
        if not answer["ok"] and answer.get("type") == "UnsafePath":
            self.engine.emit(path, "unsafe-path", False, f"{path}: {answer['error']}")

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
        """Fold the journal so far into a version; None when nothing is new.

        A checkpoint job of the entry (under its lock, deadline and retries);
        raises its final error."""
        engine = self.engine
        async with engine.lock_of(path):
            row = engine.table.get(path)
            if row is None or row["backup_mode"] != "on-write":
                return None
            upto = self.journals.known_last_seq(path)
            if upto is None:
                # No writer is open: closed after a failed append or sync (whose
                # acknowledged records this fold must keep: the program may not
                # have written them to the file yet, the journal goes first), or
                # not opened since start. The journal's segments say how far it goes.
                upto = self.journals.last_seq(path, row["sync_mode"])
            latest = await asyncio.to_thread(engine.repo.latest, path)
            if latest is None or upto <= latest.journal_seq:
                return None
            if path in self._broken:
                # Replay cannot cross the damaged stretch: a version of the live file
                # (engine.backup goes on to one) is the next base.
                return None
            try:
                await self.journals.sync(path)
                self.journals.rotate(path)
            except RepositoryError as e:
                # The journal cannot be made durable (reported, and its writer closed,
                # by Journals): folding its records into a version is what makes them
                # durable now. They are read back checksummed, so records a failed
                # sync lost on the way are a failed checkpoint, never wrong bytes.
                log.warning("checkpoint of %s goes on without a journal sync: %s", path, e)
            self._since_checkpoint[path] = (0, 0)
            config = engine.config
            job = Job.for_entry(
                "checkpoint",
                path,
                row,
                config,
                {
                    "kind": "checkpoint",
                    "upto_seq": upto,
                    "journal_dir": str(self.journals.directory(path)),
                    "tmp_dir": str(config.state_dir / "tmp"),
                },
            )

            async def finish(answer: dict[str, Any]) -> Done[Manifest]:
                manifest = Manifest.from_json(answer["manifest"])
                manifest = await asyncio.to_thread(engine.repo.commit, manifest)
                return Done(
                    manifest, {**engine.committed_fields(path, manifest), "journal_seq": upto}
                )

            manifest = await engine.jobs.run(job, finish)
            await engine.announce(path, manifest, row)
            await asyncio.to_thread(self._drop_unneeded_segments, path)
            return manifest

    def _drop_unneeded_segments(self, path: str) -> None:
        """Keep every segment a version inside the retention window still needs."""
        bases = [m for m in self.engine.repo.versions(path) if m.cause in JOURNAL_BASES]
        if bases:
            below = bases[0].journal_seq + 1
            # Records a replica has not received yet stay (replicas/replicator.py).
            replicator = getattr(self.engine, "replicator", None)
            hold = replicator.hold_seq(path) if replicator is not None else None
            drop_segments_before(self.journals.directory(path), min(below, hold or below))

    # the healer's view (healer.HealJournal) -----------------------------
    def directory(self, path: str) -> Path:
        """The entry's journal directory."""
        return self.journals.directory(path)

    async def sync(self, path: str) -> None:
        """Make every acknowledged record of the entry durable."""
        await self.journals.sync(path)

    def healed(self, path: str) -> None:
        """The file was replaced by a heal: that is not a change to journal."""
        self.api_dirty.add(path)

    def forget(self, path: str) -> None:
        self.forget_policy(path)
        self._broken.discard(path)
        self._max_size.pop(path, None)
        self.journals.close(path)
        self.streams.pop(path, None)
        self._since_checkpoint.pop(path, None)
        self.api_dirty.discard(path)
