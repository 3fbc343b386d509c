"""Index objects for the packs the daemon's workers put.

A worker names its packs in an index object only once it has put
``INDEX_EVERY`` of them itself (repo/chunkstore.py). A daemon that saves a few
files an hour, or whose workers are replaced, would leave its packs unindexed
for good, and every process that opens the repository (a new worker, a
``restore`` on a new host, ``check``) would read each such pack whole to learn
what it holds: on S3, the whole repository's worth of GETs before the first
byte is restored.

The daemon hears of every pack its workers put (the pool's news) and names
them in one index object: once ``INDEX_EVERY`` are waiting, ``age_s`` after
the first one arrived, and when the daemon stops. Index objects are a cache
of the packs (rebuildable from them), so a failed write only leaves the packs
to be found by listing, as before; it is retried at the next occasion.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from ..errors import FiletwinError
from ..repo.chunkstore import INDEX_EVERY, ChunkStore
from .gate import Gate

log = logging.getLogger("filetwin.daemon")

#: the longest a pack a worker put waits for the daemon to index it (seconds)
INDEX_AGE_S = 30.0


class Indexer:
    """Writes the index objects of the packs workers report for ``location``.

    ``heard`` is the pool's news callback (on the event loop's thread);
    ``flush`` writes what is waiting, under the gate's shared side (gc, which
    holds it exclusive, never meets an index object naming a pack it is
    deleting). ``start_task`` keeps the background flushes alive.
    """

    def __init__(
        self,
        chunks: ChunkStore,
        location: str,
        gate: Gate,
        start_task: Callable[[Coroutine[Any, Any, None]], None],
        *,
        age_s: float = INDEX_AGE_S,
        every: int = INDEX_EVERY,
    ) -> None:
        self.chunks = chunks
        self.location = location
        self.gate = gate
        self.start_task = start_task
        self.age_s = age_s
        self.every = every
        self._timer: asyncio.TimerHandle | None = None

    def heard(self, news: dict[str, Any]) -> None:
        """A worker's answer named packs it put (location -> take_news's list)."""
        held = news.get(self.location)
        if not held:
            return
        self.chunks.adopt(held, index=True)
        if self.chunks.unindexed() >= self.every:
            self._cancel_timer()
            self.start_task(self.flush())
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.age_s, self._due)

    def _due(self) -> None:
        self._timer = None
        self.start_task(self.flush())

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def flush(self) -> None:
        """Name every waiting pack in one index object (nothing when none waits)."""
        self._cancel_timer()
        if not self.chunks.unindexed():
            return
        async with self.gate.shared():
            try:
                await asyncio.to_thread(self.chunks.save_index)
            except FiletwinError as e:
                # The packs stay findable by listing; the next news or the stop retries.
                log.warning("could not write an index object (retried later): %s", e)
