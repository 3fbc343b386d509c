"""One supervisor per watching entry: turns capture events into backup jobs.

The supervisor coalesces a burst of saves: the first event opens a short
window (``coalesce_ms``); when it closes, one job reads the file as it is
then. Events that arrive while a job runs mark the entry dirty again, so the
last content of any burst is always taken. A generation counter, bumped by
every modification, tells the engine whether the file changed while the job
read it; such a read may be torn and is not committed (see Engine.backup).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from inotify_simple import flags as F

from ..capture.watcher import CHANGED, GONE, MODIFIED, Watcher
from ..errors import FiletwinError

log = logging.getLogger("filetwin.supervisor")

#: how often a supervisor whose directory is gone looks for it to come back
REWATCH_S = 0.5


@dataclass(frozen=True)
class Timing:
    """How long a supervisor waits: a burst's coalescing window, and the quiet
    spell that ends an on-write burst of a program that keeps the file open."""

    coalesce_s: float
    quiet_s: float


class Supervisor:
    """Watches one entry and calls ``run(closed)`` once per burst of changes.

    ``run`` is the engine's backup (on-close) or capture (on-write; ``closed``
    says whether the burst ended with a close); ``streaming()`` says whether a
    write stream of the entry is open (its records are exact: no timer per write).
    """

    def __init__(
        self,
        path: str,
        watcher: Watcher,
        lock: asyncio.Lock,
        on_write: bool,
        run: Callable[[bool], Awaitable[object]],
        streaming: Callable[[], bool],
        timing: Timing,
    ) -> None:
        self.path = path
        self.watcher = watcher
        self.generation = 0
        #: held by every job of the entry (backup, capture, checkpoint, heal)
        self.lock = lock
        self._run_job = run
        self._streaming = streaming
        self.timing = timing
        self._dirty = asyncio.Event()
        self._burst = False
        #: the generation when the running job's version was committed (committed())
        self._committed_gen: int | None = None
        self._task: asyncio.Task[None] | None = None
        #: on-write entries turn bursts into journal records instead of versions
        self.on_write = on_write
        self._closed = False
        self._quiet: asyncio.TimerHandle | None = None
        #: a write was seen since the file was last closed after writing or
        #: renamed over: a program may be in the middle of a save
        self.writing = False
        #: the hash of what a failed close left (None: unreadable): a version of
        #: that content is not stored until other content is (Engine.close_reported)
        self.failed_close: asyncio.Future[str | None] | None = None

    def start(self) -> None:
        # A directory that is gone now is looked for by _run until it is back.
        self._rewatch()
        self._task = asyncio.create_task(self._run(), name=f"supervisor {self.path}")

    async def stop(self) -> None:
        self.watcher.unwatch(self.path)
        if self._quiet is not None:
            self._quiet.cancel()
        if self._task is not None:
            # Cancel until it is done: a cancellation can be lost inside a job.
            while not self._task.done():
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({self._task}, timeout=1.0)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                self._task.result()
            self._task = None

    def committed(self) -> None:
        """The running job's version is committed: saves seen from now on came
        after what it read (they start the next job without the window)."""
        self._committed_gen = self.generation

    def on_event(self, mask: int) -> None:
        if mask & MODIFIED:
            self.generation += 1
        if mask & (CHANGED | GONE):
            self.writing = False
        elif mask & F.MODIFY:
            self.writing = True
        if self.on_write:
            if mask & CHANGED:
                self._closed = True
            elif mask & MODIFIED and not mask & GONE:
                if self._streaming():
                    # A write stream is open: its records are exact, and the
                    # stream's end nudges one capture; no timer per write.
                    return
                # A program that keeps the file open (a database) ends a burst
                # with a quiet spell rather than a close.
                if self._quiet is not None:
                    self._quiet.cancel()
                self._quiet = asyncio.get_running_loop().call_later(
                    self.timing.quiet_s, self._dirty.set
                )
                return
        # A bare IN_MODIFY means a write is under way: its close will follow.
        if mask & (CHANGED | GONE):
            self._dirty.set()

    def poke(self) -> None:
        """Ask for a look at the file soon (after a restart, a resume)."""
        self._dirty.set()

    def _rewatch(self) -> bool:
        try:
            self.watcher.watch(self.path)
        except FiletwinError:
            return False
        return True

    async def _run(self) -> None:
        while True:
            if self.watcher.watching(self.path):
                await self._dirty.wait()
            else:
                # The file's directory went away and the kernel dropped its watch:
                # no event can tell that it is back, so look now and then; once it
                # is watched again, take a look at the file.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(REWATCH_S):
                        await self._dirty.wait()
                if self._rewatch():
                    self._dirty.set()
                if not self._dirty.is_set():
                    continue
            # Coalescing: a save while no job runs starts one at once (low
            # latency). Saves that arrive while a job runs are a burst: the next
            # job waits out the window, so the burst costs one more job, which
            # reads the burst's last content.
            if self._burst:
                await asyncio.sleep(self.timing.coalesce_s)
            self._dirty.clear()
            start_gen, self._committed_gen = self.generation, None
            try:
                closed, self._closed = self._closed, False
                await self._run_job(closed)
            except FiletwinError as e:
                log.debug("backup of %s ended: %s", self.path, e)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("supervisor of %s", self.path)
            # A burst is a save that came while the file was being read; one
            # that came after its version was committed (while retention ran)
            # is a new save and starts its job at once.
            read_gen = self._committed_gen if self._committed_gen is not None else self.generation
            self._burst = self._dirty.is_set() and read_gen != start_gen
