"""The event log: what the daemon tells people (a job done or failed, a heal, ...).

Events go to the management table's event log, wake ``events --follow``
readers and run the config's ``on_event`` hook. An event the table cannot
store (a full state directory) has happened all the same: it is kept in
memory, answered by ``events`` with ``id`` null, and stored, in order, before
the next event once the table takes writes again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from ..errors import StateError
from ..table import Table
from .hooks import run_hook

log = logging.getLogger("filetwin.events")

#: events kept in memory while the state directory cannot store them
MAX_UNSAVED = 10_000


class EventLog:
    """``emit`` never raises; ``events`` and ``wait`` read the log."""

    def __init__(
        self,
        table: Table,
        clock: Callable[[], float],
        on_event: str,
        start_task: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.table = table
        self.clock = clock
        self.on_event = on_event
        self._start_task = start_task
        self._unsaved: list[dict[str, Any]] = []
        self._waiters: set[asyncio.Event] = set()

    def emit(self, path: str | None, kind: str, ok: bool, message: str) -> None:
        """Record an event, wake followers, run the hook (see the module docstring)."""
        if not ok:
            log.warning("%s: %s", kind, message)
        pending = {"id": None, "time": self.clock(), "path": path, "kind": kind,
                   "ok": int(ok), "message": message}  # fmt: skip
        self._unsaved.append(pending)
        if len(self._unsaved) > MAX_UNSAVED:
            log.error("event log full: dropped %s", self._unsaved.pop(0))
        event: dict[str, Any] = pending
        try:
            while self._unsaved:
                first = self._unsaved[0]
                event = self.table.add_event(
                    first["path"], first["kind"], bool(first["ok"]), first["message"],
                    at=first["time"],
                )  # fmt: skip
                self._unsaved.pop(0)
        except StateError as e:
            log.error("event %s of %s not stored yet: %s", kind, path, e)
            event = pending
        for waiter in self._waiters:
            waiter.set()
        if self.on_event:
            self._start_task(run_hook(self.on_event, event))

    def events(
        self, path: str | None = None, after_id: int = 0, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The log after ``after_id`` (of ``path``), oldest first, with the events
        not stored yet at its end."""
        stored = self.table.events(path, after_id, limit)
        unsaved = [e for e in self._unsaved if path is None or e["path"] == path]
        out = stored + unsaved
        return out[-limit:] if limit is not None else out

    async def wait(self, after_id: int, path: str | None) -> list[dict[str, Any]]:
        """Stored events after ``after_id``, waiting until there is at least one."""
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        try:
            while True:
                events = self.table.events(path, after_id)
                if events:
                    return events
                waiter.clear()
                await waiter.wait()
        finally:
            self._waiters.discard(waiter)
