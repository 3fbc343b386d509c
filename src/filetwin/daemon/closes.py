"""Failed closes of on-close entries, reported by ``filetwin.open`` or the interceptor.

A program whose close failed was told so; what the close left in the file is
not what it meant to keep, so it is never a version: a backup that reads
content with the hash of what the failed close left is not committed, and a
version stored in the instant before the report arrived (inotify's close
event can beat it) is retracted. An ``auto`` entry is healed back to its
newest good state (a rollback the program was told of).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any

import blake3

from ..errors import FiletwinError
from ..repo import Repository
from ..safeio import open_protected
from ..table import Table
from .jobs import EventSink
from .supervisor import Supervisor

#: how recent a version may be to be retracted when a failed close of its
#: content is reported after it was stored
RETRACT_WINDOW_S = 5.0


def content_hash(path: str) -> str | None:
    """The BLAKE3 hex digest of the file at ``path`` (no symlink followed), or None."""
    try:
        fd = open_protected(path)
    except (OSError, FiletwinError):
        return None
    try:
        hasher = blake3.blake3()
        while data := os.read(fd, 8 << 20):
            hasher.update(data)
        return str(hasher.hexdigest())
    except OSError:
        return None
    finally:
        os.close(fd)


class FailedCloses:
    """What the engine does with a close reported failed (see the module docstring)."""

    def __init__(
        self,
        table: Table,
        repo: Repository,
        emit: EventSink,
        lock_of: Callable[[str], asyncio.Lock],
        supervisor_of: Callable[[str], Supervisor | None],
        schedule_heal: Callable[[str, str, bool], None],
        start_task: Callable[[Coroutine[Any, Any, None]], None],
        clock: Callable[[], float],
    ) -> None:
        self.table = table
        self.repo = repo
        self.emit = emit
        self.lock_of = lock_of
        self.supervisor_of = supervisor_of
        self.schedule_heal = schedule_heal
        self.start_task = start_task
        self.clock = clock

    def reported(self, path: str, ok: bool) -> None:
        """A close of on-close entry ``path`` ended with ``ok``."""
        if ok:
            return
        bad = asyncio.ensure_future(asyncio.to_thread(content_hash, path))
        sup = self.supervisor_of(path)
        if sup is not None:
            sup.failed_close = bad
        self.start_task(self._retract(path, bad))
        message = f"a close of {path} failed; the content it left is not stored as a version"
        self.table.set(path, last_error=message)
        self.emit(path, "close-failed", False, message)
        if self.table.require(path)["recovery_mode"] == "auto":
            self.schedule_heal(path, "a close failed", True)

    async def _retract(self, path: str, bad: asyncio.Future[str | None]) -> None:
        """Remove the newest version if it holds what the failed close just left."""
        digest = await bad
        if digest is None:
            return
        async with self.lock_of(path):
            latest = await asyncio.to_thread(self.repo.latest, path)
            if (
                latest is None
                or latest.hash != digest
                or latest.cause != "close"
                or self.clock() - latest.time > RETRACT_WINDOW_S
            ):
                return
            await asyncio.to_thread(self.repo.retract, latest)
            previous = await asyncio.to_thread(self.repo.latest, path)
            count = len(await asyncio.to_thread(self.repo.version_names, path))
            self.table.set(
                path,
                versions=count,
                last_version=previous.id if previous else None,
                last_good_hash=previous.hash if previous else None,
            )
            self.emit(
                path,
                "retracted",
                False,
                f"version {latest.id} of {path} was read just after a close that failed: "
                "it is not kept as a version",
            )
