"""Retention and garbage collection: old versions go, then their chunks.

``retain`` applies an entry's retention rules (``--keep`` and the time-based
``--keep-within``/``--keep-hourly``/... of repo/forget.py, with the versions
Repository.apply_retention never removes) and recounts its versions; chunks no
version references any more (retention's, or a failed backup's) are removed
by one gc ``delay_s`` after the first request, because gc lists the whole
repository and holds it exclusively (the gate) while it decides.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from ..errors import FiletwinError
from ..policy import Policy
from ..repo import Repository
from ..table import Table
from .gate import Gate
from .jobs import EventSink

log = logging.getLogger("filetwin.retention")


class Retention:
    def __init__(
        self,
        repo: Repository,
        table: Table,
        gate: Gate,
        emit: EventSink,
        delay_s: float,
        start_task: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.repo = repo
        self.table = table
        self.gate = gate
        self.emit = emit
        self.delay_s = delay_s
        self.start_task = start_task
        self._timer: asyncio.TimerHandle | None = None

    async def retain(self, path: str, keep: int) -> None:
        """Apply the entry's retention and recount its versions.

        The rules are the entry's policy as the table holds it now (an update
        since the caller read its row counts); ``keep`` is the count rule used
        alone when the entry has no row any more."""
        row = self.table.get(path)
        rules = (Table.policy_of(row) if row is not None else Policy(keep=keep)).rules()
        if row is not None and row["versions"] is not None and row["versions"] <= rules.last:
            # Every rule keeps the newest ``last`` versions whatever else it says,
            # so there is nothing to remove: spare the listing (a request on S3).
            # A count behind the repository only delays retention to a later save.
            return
        removed = await asyncio.to_thread(self.repo.apply_retention, path, rules)
        if removed:
            # Names only: listing is cheap, loading every manifest is not.
            count = len(await asyncio.to_thread(self.repo.version_names, path))
            if self.table.get(path) is not None:
                self.table.set(path, versions=count)
            self.schedule_gc()

    async def recount(self, path: str) -> None:
        """Count the entry's versions again (a restore kept one aside), then retain."""
        count = len(await asyncio.to_thread(self.repo.version_names, path))
        row = self.table.get(path)
        if row is not None:
            self.table.set(path, versions=count)
            await self.retain(path, row["keep"])

    def schedule_gc(self) -> None:
        """Collect unreferenced chunks ``delay_s`` from now, once for many requests."""
        if self._timer is None:
            loop = asyncio.get_running_loop()

            def fire() -> None:
                self._timer = None
                self.start_task(self._gc())

            self._timer = loop.call_later(self.delay_s, fire)

    async def _gc(self) -> None:
        try:
            async with self.gate.exclusive():
                removed = await asyncio.to_thread(self.repo.gc)
        except FiletwinError as e:
            self.emit(None, "gc-failed", False, f"removing unreferenced chunks failed: {e}")
            return
        if removed:
            log.info("gc removed %d unreferenced chunks", removed)
