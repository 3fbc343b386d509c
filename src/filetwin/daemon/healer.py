"""Healing in the daemon: who may ask for it, the recovery job, verify and scrub.

Triggers: ``notify`` (an application or `filetwin recover` asks), ``auto``
(an I/O error reported by the library or the interceptor, a read error while
backing up, a failed close of an on-write file, corruption found by verify or
the scrub). ``manual`` entries are healed only by a person's `filetwin restore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..capture.leases import on_fuse, open_for_writing
from ..config import Config
from ..errors import Conflict, FiletwinError
from ..table import Table
from .jobs import EventSink, Job, JobRunner, result_of

log = logging.getLogger("filetwin.healer")


class HealJournal(Protocol):
    """What healing needs of the on-write side."""

    def directory(self, path: str) -> Path:
        """The entry's journal directory."""

    async def sync(self, path: str) -> None:
        """Make every acknowledged record of the entry durable before a heal reads them."""

    def healed(self, path: str) -> None:
        """The file was replaced by a heal: that is not a change to journal."""


class Healer:
    """Heals, verifies and scrubs entries through the job runner.

    Collaborators are narrow: the table, the job runner, an event sink, the
    per-entry locks (a heal and a backup of one entry never overlap) and the
    journal access above.
    """

    def __init__(
        self,
        config: Config,
        table: Table,
        jobs: JobRunner,
        emit: EventSink,
        lock_of: Callable[[str], asyncio.Lock],
        journal: HealJournal,
    ) -> None:
        self.config = config
        self.table = table
        self.jobs = jobs
        self.emit = emit
        self.lock_of = lock_of
        self.journal = journal
        self._scrub: asyncio.Task[None] | None = None
        #: the heal running for each entry (a second trigger waits for it)
        self._running: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def start(self) -> None:
        if self.config.scrub_interval_s > 0:
            self._scrub = asyncio.create_task(self._scrub_loop())

    async def stop(self) -> None:
        if self._scrub is not None:
            self._scrub.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scrub

    def _job(self, kind: str, row: dict[str, Any]) -> Job:
        path = row["path"]
        return Job.for_entry(
            "recovery" if kind == "heal" else kind,
            path,
            row,
            self.config,
            {
                "kind": kind,
                "quarantine_dir": str(self.config.quarantine_dir),
                "journal_dir": (
                    str(self.journal.directory(path)) if row["backup_mode"] == "on-write" else None
                ),
            },
            # verify only reads: it need not hold gc off
            gated=kind != "verify",
        )

    async def request(
        self, path: str, reason: str, trigger: str, told: bool = False
    ) -> dict[str, Any]:
        """Heal ``path`` if its policy lets ``trigger`` ask; return the heal's result.

        ``trigger`` is ``notify`` (an application's request) or ``auto`` (an
        error the system detected). A manual entry refuses both; a notify
        entry refuses automatic triggers (they are reported, not acted on).
        """
        row = self.table.require(path)
        mode = row["recovery_mode"]
        if mode == "manual" or (trigger == "auto" and mode != "auto"):
            message = (
                f"{path} has recovery mode {mode}: its policy reserves recovery for a person "
                f"(`filetwin restore {path}`)"
                if mode == "manual"
                else f"{path} has recovery mode {mode}: it is healed when an application asks "
                f"(`filetwin recover {path}`)"
            )
            self.emit(path, "heal-refused", False, f"{reason}; {message}")
            raise Conflict(message)
        self.table.set(path, recovery_requested=1)
        try:
            return await self.heal(path, reason, told)
        finally:
            if self.table.get(path) is not None:
                self.table.set(path, recovery_requested=0)

    async def heal(self, path: str, reason: str, told: bool = False) -> dict[str, Any]:
        """Heal ``path`` now; at most one heal per entry runs at a time: a trigger
        that comes while one runs waits for that heal and gets its result."""
        running = self._running.get(path)
        if running is not None and not running.done():
            return await asyncio.shield(running)
        task = asyncio.ensure_future(self._heal(path, reason, told))
        self._running[path] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done() and self._running.get(path) is task:
                del self._running[path]

    async def _heal(self, path: str, reason: str, told: bool) -> dict[str, Any]:
        """Heal the file if it is damaged; run the recovery job with the entry's
        retries and deadline.

        A file that matches its newest state has nothing to heal. One that reads
        without error and is newer than it holds writes a program made since:
        it is rolled back only when ``told`` (the program that wrote was told its
        writes failed: a failed close); otherwise it is left as it is. The answer
        (``healed`` false) says why nothing was done.
        """
        async with self.lock_of(path):
            row = self.table.require(path)
            if row["backup_mode"] == "on-write":
                await self.journal.sync(path)
            check = await self.jobs.run(self._job("verify", row), result_of)
            if check["status"] == "ok" or (check["status"] == "changed" and not told):
                why = (
                    "it matches its newest state: nothing to heal"
                    if check["status"] == "ok"
                    else "it reads without error and is newer than its last state "
                    f"({check['detail']}); healing would roll back writes made since. "
                    f"Use `filetwin restore {path}` to go back deliberately"
                )
                self.emit(path, "heal-skipped", True, f"{path} was not healed ({reason}): {why}")
                return {
                    "path": path,
                    "healed": False,
                    "status": check["status"],
                    "message": f"{path} was not healed: {why}",
                    "version": None,
                    "journal_seq": None,
                    "quarantined": None,
                    "unreadable": [],
                }
            job = self._job("heal", row)
            # A program holding the file open for writing keeps writing into the
            # healed file, not into an unlinked inode that nothing will read.
            job.work["in_place"] = bool(
                await asyncio.to_thread(open_for_writing, path)
            ) and not await asyncio.to_thread(on_fuse, path)
            healed = await self.jobs.run(job, result_of)
            healed["healed"] = True
            self.journal.healed(path)
            where = (
                f"; the damaged copy is in {healed['quarantined']}" if healed["quarantined"] else ""
            )
            seq = healed["journal_seq"]
            journal = f" and its journal up to record {seq}" if seq else ""
            bad = (
                f" ({len(healed['unreadable'])} unreadable block(s) in it)"
                if healed["unreadable"]
                else ""
            )
            self.emit(
                path,
                "healed",
                True,
                f"healed {path} ({reason}) from version {healed['version']}{journal}{where}{bad}",
            )
            return healed

    async def verify(self, path: str) -> dict[str, Any]:
        """Compare the live file with its newest state; heal it if it is auto."""
        row = self.table.require(path)
        report = await self.jobs.run(self._job("verify", row), result_of)
        report["recovery_mode"] = row["recovery_mode"]
        report["healed"] = False
        if report["status"] == "corrupt":
            self.emit(path, "corrupt", False, f"{path}: {report['detail']}")
            if row["recovery_mode"] == "auto":
                try:
                    healed = await self.heal(path, f"verify: {report['detail']}")
                    report["healed"] = True
                    report["quarantined"] = healed["quarantined"]
                except FiletwinError as e:
                    report["heal_error"] = str(e)
        return report

    async def verify_all(self, path: str | None = None) -> list[dict[str, Any]]:
        rows = [row for row in self.table.all() if row["state"] != "paused"]
        if path is not None:
            rows = [self.table.require(path)]
        reports = []
        for row in rows:
            try:
                reports.append(await self.verify(row["path"]))
            except FiletwinError as e:
                reports.append(
                    {
                        "path": row["path"],
                        "status": "error",
                        "detail": str(e),
                        "healed": False,
                        "recovery_mode": row["recovery_mode"],
                    }
                )
        return reports

    async def _scrub_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.scrub_interval_s)
            try:
                reports = await self.verify_all()
            except Exception:
                log.exception("scrub")
                continue
            bad = [r for r in reports if r["status"] == "corrupt"]
            self.emit(
                None, "scrub", not bad, f"scrub of {len(reports)} entries: {len(bad)} corrupt"
            )

