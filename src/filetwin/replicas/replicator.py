"""The daemon's replicator: one asyncio task per ``[[replica]]``, never in a save's way.

Each task keeps its replica a copy of the primary (mirror.py) and ships the
records of on-write journals (shipper.py) under ``hosts/<host>/`` of the
replica's location (layout.py). Nothing here is awaited by a save or a
journaled write: the engine and the journals only *notify* (``committed``,
``appended``: a dict update and an Event set, on the loop), and every backend
call runs in a thread of the task.

- Journal records are shipped once the oldest unshipped one is ``window_s``
  old (default 0.1 s), so the records of one window make one object.
- A version (or any repository change) makes a pass of the mirror at once;
  a full pass, the safety net, runs every ``full_s`` (the replica's
  ``safety_pass_s``): it lists the replica again and reads back up to
  ``VERIFY_BYTES`` of its objects (round robin over the passes), so objects
  deleted or damaged there behind filetwin's back are put again (journal
  objects from the local journal while it holds their records), with an event
  ``replica-repaired`` naming them; and it propagates deletions of journal
  objects.
- A failure (replica down, refused credentials) is an event ``replica-failed``
  naming it (once per distinct problem) and the task retries with exponential
  backoff (``backoff_s`` doubled up to ``max_backoff_s``); on its return the
  positions are recomputed from the replica (a listing) and it catches up.
- Lag per entry: the age of the oldest change the replica lacks (a version
  committed or a record acknowledged, not yet there), 0 when caught up. Events
  ``replica-behind`` when a replica's lag passes its ``lag_alert_s`` and
  ``replica-caught-up`` when it is back under it (or after a failure, once
  everything is there).
- ``hold_seq(path)``: the local journal keeps every record some replica has
  not received (onwrite.py drops segments only below it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..backends import open_backend
from ..backends.base import Backend
from ..config import ReplicaSettings
from ..errors import FiletwinError
from ..repo.moments import journal_dir
from ..repo.repository import Repository
from .layout import host_location
from .mirror import Mirror, PassResult, manifest_parts
from .shipper import Shipper, first_local_seq

log = logging.getLogger("filetwin.replicas")

Emit = Callable[[str | None, str, bool, str], None]

#: bytes of replica objects read back per safety pass to find damaged copies
#: (round robin: a replica of N bytes is read whole every N / VERIFY_BYTES passes)
VERIFY_BYTES = 64 << 20


class Replica:
    """One replica's task and state (all state is touched on the event loop only)."""

    def __init__(
        self,
        settings: ReplicaSettings,
        host: str,
        primary: Repository,
        journals_root: Path,
        paths: Callable[[], list[str]],
        emit: Emit,
        clock: Callable[[], float],
        *,
        window_s: float = 0.1,
        full_s: float | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.settings = settings
        self.name = settings.name or settings.location
        self.location = host_location(settings.location, host)
        self.primary = primary
        self.journals_root = journals_root
        self.paths = paths
        self.emit = emit
        self.clock = clock
        self.window_s = window_s
        self.full_s = settings.safety_pass_s if full_s is None else full_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.backend: Backend | None = None
        self.mirror: Mirror | None = None
        self.shipper: Shipper | None = None
        self.connected = False
        #: the last acknowledged seq per on-write entry, and since when one is unshipped
        self.acked: dict[str, int] = {}
        self.pending_since: dict[str, float] = {}
        self._later: dict[str, float] = {}
        self._shipping: set[str] = set()
        #: the replica's position per entry (known once connected)
        self.shipped: dict[str, int] = {}
        #: entries with a version committed and not yet mirrored: since when
        self.dirty: dict[str, float] = {}
        self._repo_dirty = True
        #: entry key -> the oldest version missing on the replica (from the last listing)
        self.missing: dict[str, float] = {}
        #: entry key -> (time, id) of the newest version the replica holds
        self.newest: dict[str, tuple[float, str]] = {}
        self.error: str | None = None
        self.behind = False
        self._next_full = 0.0
        #: entries with versions committed since the last pass (an ordered set)
        self._entries: dict[str, None] = {}
        #: wakes the shipping loop (records) and the pass loop (versions)
        self._wake = asyncio.Event()
        self._pass_wake = asyncio.Event()
        self._failing = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    # notifications (event loop) --------------------------------------------
    def appended(self, path: str, seq: int) -> None:
        if seq <= self.acked.get(path, 0):
            return
        self.acked[path] = seq
        now = self.clock()
        if path in self._shipping:
            self._later.setdefault(path, now)
        elif seq > self.shipped.get(path, 0):
            self.pending_since.setdefault(path, now)
        self._wake.set()

    def committed(self, path: str) -> None:
        """A version of ``path`` was committed: copy it (and what it needs) now."""
        self.dirty.setdefault(path, self.clock())
        self._entries[path] = None
        self._pass_wake.set()

    def changed(self) -> None:
        """Something other than a version changed the repository (retention, gc)."""
        self._repo_dirty = True
        self._pass_wake.set()

    # life cycle ------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._pass_wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = self.backoff_s
        while not self._stopping:
            try:
                if not self.connected:
                    await asyncio.to_thread(self._connect)
                    self.connected = True
                    self._next_full = 0.0
                await self._work()
            except FiletwinError as e:
                self.connected = False  # positions are recomputed from the replica
                self._failed(str(e))
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
            except Exception as e:  # noqa: BLE001 - a bug must not end replication silently
                log.exception("replica %s", self.name)
                self.connected = False
                self._failed(f"{type(e).__name__}: {e}")
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
            else:
                backoff = self.backoff_s

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (the backoff), or until the replicator stops."""
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            self._wake.clear()
            self._lag_events()  # the lag grows while the replica is away: say so
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(1.0, deadline - time.monotonic()))

    def _connect(self) -> None:
        """(thread) Open the replica's backend and recompute its positions."""
        s = self.settings
        if self.backend is None:
            self.backend = open_backend(
                self.location,
                endpoint_url=s.endpoint or None,
                region=s.region or None,
                create=s.create_bucket,
            )
            self.mirror = Mirror(self.primary.backend, self.backend)
            self.shipper = Shipper(self.backend, self.primary.keys)
        assert self.mirror is not None and self.shipper is not None
        self.mirror.rescan()
        self.shipper.rescan()

    def _failed(self, message: str) -> None:
        if message != self.error:
            self.emit(
                None,
                "replica-failed",
                False,
                f"replica {self.name} ({self.location}): {message}; retrying with backoff",
            )
        self.error = message

    # the work loop -----------------------------------------------------------
    async def _work(self) -> None:
        """Journal shipping and mirror passes as two loops, so that a slow pass (a
        large pack going up) never holds back a journal record; a failure in
        either stops both (after their current step) and is raised."""
        assert self.shipper is not None
        key_of = self.primary.entry_key
        # Positions from the replica (at start and after every failure).
        for path in set(self.acked) | set(self.paths()):
            self.shipped[path] = self.shipper.shipped(key_of(path))
            if self.acked.get(path, 0) > self.shipped[path]:
                self.pending_since.setdefault(path, self.clock())
        self._failing = False
        results = await asyncio.gather(self._ship_loop(), self._pass_loop(), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r

    def _go_on(self) -> bool:
        return not self._stopping and not self._failing

    async def _ship_loop(self) -> None:
        try:
            while self._go_on():
                self._wake.clear()
                now = self.clock()
                due = [
                    p
                    for p, since in self.pending_since.items()
                    if now - since >= self.window_s
                    and self.acked.get(p, 0) > self.shipped.get(p, 0)
                ]
                for path in due:
                    await self._ship(path)
                self._settled()
                waits = [
                    since + self.window_s - self.clock() for since in self.pending_since.values()
                ]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, min([1.0, *waits])))
        except BaseException:
            self._fail_both()
            raise

    async def _pass_loop(self) -> None:
        try:
            while self._go_on():
                self._pass_wake.clear()
                now = self.clock()
                if self._repo_dirty or now >= self._next_full:
                    await self._pass(full=now >= self._next_full)
                elif self._entries:
                    await self._entry_pass()
                self._settled()
                if self._repo_dirty or self._entries:
                    continue
                timeout = max(0.0, min(1.0, self._next_full - self.clock()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._pass_wake.wait(), timeout)
        except BaseException:
            self._fail_both()
            raise

    def _fail_both(self) -> None:
        self._failing = True
        self._wake.set()
        self._pass_wake.set()

    def _settled(self) -> None:
        """After a step of either loop: a replica that had failed is back; lag events."""
        if self.error is not None:
            self.error = None
            self._lag_events(force_caught_up=True)
        self._lag_events()

    async def _entry_pass(self) -> None:
        """Copy the versions of the entries committed since the last pass (the
        event-driven path; mirror.sync_entry), falling back to a full pass."""
        assert self.mirror is not None
        entries, self._entries = self._entries, {}
        before = dict(self.dirty)
        done = await asyncio.to_thread(self._entry_thread, list(entries))
        if done is None:
            self._repo_dirty = True  # a full pass does it
            return
        for path, since in before.items():
            if path in entries and self.dirty.get(path) == since:
                del self.dirty[path]
        for key, newest in done.items():
            if key not in self.newest or self.newest[key][0] < newest[0]:
                self.newest[key] = newest

    def _entry_thread(self, paths: list[str]) -> dict[str, tuple[float, str]] | None:
        """(thread) sync_entry for each path; the newest version put per entry key,
        or None if a full pass is needed."""
        assert self.mirror is not None
        repo = self.primary
        newest: dict[str, tuple[float, str]] = {}
        for path in paths:
            key = repo.entry_key(path)
            put = self.mirror.sync_entry(key, repo.load_manifest, repo.chunks.where)
            if put is None:
                return None
            for name in put:
                parts = manifest_parts(name)
                if parts is not None and (key not in newest or newest[key][0] < parts[1]):
                    newest[key] = (parts[1], parts[2])
        return newest

    async def _ship(self, path: str) -> None:
        assert self.shipper is not None
        upto = self.acked[path]
        key = self.primary.entry_key(path)
        jdir = journal_dir(self.journals_root, path)
        self._shipping.add(path)
        try:
            new = await asyncio.to_thread(self.shipper.ship, key, jdir, upto)
        finally:
            self._shipping.discard(path)
            later = self._later.pop(path, None)
        self.shipped[path] = max(new, self.shipped.get(path, 0))
        self.pending_since.pop(path, None)
        if later is not None and self.acked[path] > self.shipped[path]:
            self.pending_since[path] = later
        elif self.shipped[path] < upto:
            # The local journal does not hold them (dropped before this replica was
            # configured, or damaged): nothing more to ship until the next record.
            self.acked[path] = self.shipped[path]

    async def _pass(self, full: bool) -> None:
        assert self.mirror is not None and self.shipper is not None
        self._repo_dirty = False
        self._entries = {}  # a full pass copies every version
        before = dict(self.dirty)
        paths = self.paths()
        result, repaired, lost = await asyncio.to_thread(self._pass_thread, full, paths)
        if repaired or lost:
            gone = f"; lost for good (the local journal no longer holds them): {', '.join(lost)}"
            self.emit(
                None,
                "replica-repaired",
                not lost,
                f"replica {self.name} ({self.location}): put again what was deleted or "
                f"damaged there: {', '.join(repaired) or 'nothing'}" + (gone if lost else ""),
            )
        for path, since in before.items():
            if self.dirty.get(path) == since:
                del self.dirty[path]
        if not result.complete:
            self._repo_dirty = True
        if full:
            self._next_full = self.clock() + self.full_s

    def _pass_thread(self, full: bool, paths: list[str]) -> tuple[PassResult, list[str], list[str]]:
        """(thread) One pass; with the names put again because the replica had lost
        or damaged them, and those it lacks for good."""
        assert self.mirror is not None and self.shipper is not None
        mirror = self.mirror
        gone: list[str] = []
        journals: list[tuple[str, str, int, int]] = []
        # Journal objects shipped from here on (the other loop) are never pruned by
        # this pass: their entry's first version may postdate this pass's listing.
        with self.shipper.lock:
            prunable = {n for held in self.shipper.objects.values() for n in held}
        if full:
            gone = mirror.rescan() + mirror.verify_some(VERIFY_BYTES)
            journals = self.shipper.rescan() + self.shipper.verify_some(VERIFY_BYTES)
        known = mirror.known or set()
        missing: dict[str, float] = {}
        result = PassResult()
        for _attempt in range(3):
            pending = {n for n in self.primary.backend.list("manifests/")} - known
            for name in pending:
                parts = manifest_parts(name)
                if parts is not None:
                    missing[parts[0]] = min(missing.get(parts[0], parts[1]), parts[1])
            self.missing = missing
            result = mirror.sync()
            if result.complete:
                break
        self.missing = {}
        self.newest = mirror.newest_by_key()
        # Put again by the sync (those the primary itself dropped since are not).
        repaired = [n for n in gone if n in (mirror.known or ())]
        lost: list[str] = []
        local = {self.primary.entry_key(p): p for p in paths}
        for name, key, first, last in journals:
            path = local.get(key)
            jdir = journal_dir(self.journals_root, path) if path is not None else None
            oldest = first_local_seq(jdir) if jdir is not None else None
            if jdir is None or oldest is None or last < oldest:
                continue  # records a checkpoint covers: the prune drops such objects too
            if self.shipper.reship(key, jdir, first, last):
                repaired.append(name)
            else:
                lost.append(name)
        if full and result.complete:
            self._prune_journals(result, paths, prunable)
        return result, repaired, lost

    def _prune_journals(self, result: PassResult, paths: list[str], prunable: set[str]) -> None:
        """(thread) Journal objects the replica no longer needs: all of an entry the
        primary has no versions of; below the oldest local segment otherwise."""
        assert self.shipper is not None
        with_versions = {p[0] for n in result.manifests if (p := manifest_parts(n))}
        local = {self.primary.entry_key(p): p for p in paths}
        for key in list(self.shipper.objects):
            if key not in with_versions:
                self.shipper.prune(key, None, only=prunable)
            elif key in local:
                first = first_local_seq(journal_dir(self.journals_root, local[key]))
                if first is not None:
                    self.shipper.prune(key, first, only=prunable)

    # lag ---------------------------------------------------------------------
    def lag(self, path: str | None = None) -> float:
        """Age of the oldest change the replica lacks (of one entry, or of any)."""
        times: list[float] = []
        if path is None:
            times += list(self.pending_since.values()) + list(self.dirty.values())
            times += list(self.missing.values())
        else:
            if path in self.pending_since:
                times.append(self.pending_since[path])
            if path in self.dirty:
                times.append(self.dirty[path])
            key = self.primary.entry_key(path)
            if key in self.missing:
                times.append(self.missing[key])
        return max(0.0, self.clock() - min(times)) if times else 0.0

    def _lag_events(self, force_caught_up: bool = False) -> None:
        lag = self.lag()
        bound = self.settings.lag_alert_s
        if not self.behind and lag > bound:
            self.behind = True
            self.emit(
                None,
                "replica-behind",
                False,
                f"replica {self.name} trails by {lag:.1f} s (more than {bound:g} s)",
            )
        elif (self.behind and lag <= bound) or (force_caught_up and lag <= bound):
            self.behind = False
            self.emit(None, "replica-caught-up", True, f"replica {self.name} has caught up")

    def row(self, path: str) -> dict[str, Any]:
        """What status shows of this replica for entry ``path``."""
        newest = self.newest.get(self.primary.entry_key(path))
        return {
            "name": self.name,
            "version": newest[1] if newest else None,
            "journal_seq": self.shipped.get(path, 0),
            "lag_s": round(self.lag(path), 3),
        }

    def hold_seq(self, path: str) -> int:
        """The lowest seq the local journal of ``path`` must keep for this replica."""
        if not self.connected and path not in self.shipped:
            return 1
        return self.shipped.get(path, 0) + 1


class Replicator:
    """Every replica of the daemon (see module doc)."""

    def __init__(self, replicas: list[Replica]) -> None:
        self.replicas = replicas

    @classmethod
    def from_config(
        cls,
        settings: tuple[ReplicaSettings, ...],
        host: str,
        primary: Repository,
        journals_root: Path,
        paths: Callable[[], list[str]],
        emit: Emit,
        clock: Callable[[], float] = time.time,
        **timing: float,
    ) -> Replicator:
        return cls(
            [
                Replica(s, host, primary, journals_root, paths, emit, clock, **timing)
                for s in settings
            ]
        )

    def start(self) -> None:
        for r in self.replicas:
            r.start()

    async def stop(self) -> None:
        for r in self.replicas:
            await r.stop()

    def appended(self, path: str, seq: int) -> None:
        for r in self.replicas:
            r.appended(path, seq)

    def committed(self, path: str) -> None:
        for r in self.replicas:
            r.committed(path)

    def changed(self) -> None:
        for r in self.replicas:
            r.changed()

    def rows(self, path: str) -> list[dict[str, Any]]:
        return [r.row(path) for r in self.replicas]

    def hold_seq(self, path: str) -> int | None:
        """The lowest seq the local journal must keep (None: no replica holds anything back)."""
        if not self.replicas:
            return None
        return min(r.hold_seq(path) for r in self.replicas)

    def gauges(self) -> list[dict[str, Any]]:
        """Per replica, for the metrics (read from the scrape's thread: snapshots):
        ``name``, ``up``, ``lag_s``, ``newest_version_age_s`` (None: holds no
        version) and ``journal_seq`` (path -> newest record shipped)."""
        out = []
        for r in self.replicas:
            times = [t for t, _vid in list(r.newest.values())]
            out.append(
                {
                    "name": r.name,
                    "up": r.connected and r.error is None,
                    "lag_s": r.lag(),
                    "newest_version_age_s": max(0.0, r.clock() - max(times)) if times else None,
                    "journal_seq": {p: n for p, n in list(r.shipped.items()) if n or p in r.acked},
                }
            )
        return out

    def summary(self) -> list[dict[str, Any]]:
        """Per replica: name, location, whether it answers, its problem, its lag."""
        return [
            {
                "name": r.name,
                "location": r.location,
                "connected": r.connected and r.error is None,
                "error": r.error,
                "lag_s": round(r.lag(), 3),
            }
            for r in self.replicas
        ]
