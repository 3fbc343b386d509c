"""The engine: table, repository, worker pool, watcher and supervisors together.

It is the daemon minus its API: every command the API offers is a method
here, and every change of an entry goes through the reconciler (``apply``),
which also finishes, at start, any change a previous daemon left pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

from ..capture.leases import ignore_lease_breaks, open_for_writing
from ..capture.watcher import Watcher
from ..config import Config
from ..errors import (
    Conflict,
    FiletwinError,
    NotFound,
    SourceError,
)
from ..heal import IO_ERRNOS
from ..policy import Policy
from ..replicas.fallback import repairs_event, setup_entries
from ..replicas.layout import this_host
from ..replicas.replicator import Replicator
from ..repo import Manifest
from ..repo.crypto import export_keys, passphrase_from_env
from ..repo.opening import open_repository
from ..table import Table, as_json
from .batcher import PrepareBatcher
from .closes import FailedCloses
from .entrypaths import validate_new_paths
from .events import EventLog
from .gate import Gate
from .healer import Healer
from .indexer import Indexer
from .jobs import Abandon, Done, Job, JobRunner, result_of
from .metrics import Metrics
from .mounts import Mounts
from .onwrite import OnWrite
from .pool import WorkerPool
from .reconcile import Reconciler
from .retention import Retention
from .supervisor import Supervisor, Timing

log = logging.getLogger("filetwin.engine")

#: how many times a job whose file changed while it was read is run again
#: before an explicit request commits what it read anyway
UNSTABLE_RETRIES = 5
#: how long a capture waits for a late inotify event when a writer holds the file
EVENT_SETTLE_S = 0.05
#: what a backup job returns when the file changed while it was read
_UNSTABLE: Any = object()


class Engine:
    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        config.ensure_state_dir()
        self.table = Table(config.table_path, clock)
        self.repo = open_repository(
            config.repository_location,
            state_dir=config.state_dir,
            create_mode=config.encryption,
            passphrase=passphrase_from_env,
            clock=clock,
        )
        # Workers get the unlocked keys over their private pipe, not the passphrase.
        self.pool = WorkerPool(
            config.workers,
            setup={
                "keys": {config.repository_location: export_keys(self.repo.keys).decode()},
                # A chunk the primary lacks or holds damaged is read from a replica.
                "replicas": {
                    config.repository_location: setup_entries(config.replicas, this_host())
                },
            },
        )
        self.pool.on_answer = lambda job, answer: repairs_event(self.emit, job, answer)
        self.watcher = Watcher(self._on_fs_event)
        self.supervisors: dict[str, Supervisor] = {}
        self.gate = Gate()
        self.indexer = Indexer(
            self.repo.chunks, config.repository_location, self.gate, self._start_task
        )
        self.pool.on_news = self.indexer.heard
        #: fire-and-forget tasks (event hooks, scheduled heals), kept from the GC
        self._hooks: set[asyncio.Task[None]] = set()
        self.eventlog = EventLog(self.table, clock, config.on_event, self._start_task)
        self.metrics = Metrics(
            config.table_path,
            config.journals_dir,
            config.repository_location,
            lambda path: self.onwrite.pending(path),  # onwrite is made below
            clock,
        )
        self.jobs = JobRunner(
            self.metrics.job_table(self.table),
            self.pool,
            self.gate,
            self.emit,
            config.retry_backoff_s,
            stopping=lambda: self._stopping,
            batcher=PrepareBatcher(self.pool, config.timeout_rate),
        )
        #: one lock per entry, held by each of its jobs (backup, capture, heal, checkpoint)
        self._locks: dict[str, asyncio.Lock] = {}
        self.onwrite = OnWrite(self)
        #: the daemon's supervisor of in-place mounts (filetwin mount --in-place)
        self.mounts = Mounts(
            config,
            self.emit,
            holds_entries=lambda d: any(os.path.dirname(p) == d for p in self.table.paths()),
        )
        self.healer = Healer(config, self.table, self.jobs, self.emit, self.lock_of, self.onwrite)
        self.closes = FailedCloses(
            self.table,
            self.repo,
            self.emit,
            self.lock_of,
            self.supervisors.get,
            self.schedule_heal,
            self._start_task,
            clock,
        )
        self.retention = Retention(
            self.repo, self.table, self.gate, self.emit, config.gc_delay_s, self._start_task
        )
        #: the [[replica]] tables' tasks: notified of commits and journal records
        self.replicator = Replicator.from_config(
            config.replicas, this_host(), self.repo, config.journals_dir, self.table.paths,
            self.emit, clock,
        )  # fmt: skip
        self.onwrite.journals.on_appended = self.replicator.appended
        self.metrics.replicas = self.replicator.gauges
        self._stopping = False
        #: the config's [[protect]] tables applied at start and on reload
        self.reconciler = Reconciler(self)

    # life cycle --------------------------------------------------------
    async def start(self) -> None:
        ignore_lease_breaks()
        await self.pool.start()
        self.healer.start()
        self.mounts.start()
        for path in self.onwrite.open_journals():
            # A damaged journal: its entry gets a version of the live file before
            # any new write can be journaled after the damage.
            await self.onwrite.fresh_version_now(path)
        self.watcher.start(asyncio.get_running_loop())
        self.replicator.start()
        catch_up: list[str] = []
        for row in self.table.all():
            path = row["path"]
            interrupted = row["job_kind"] is not None or row["last_result"] == "interrupted"
            if interrupted:
                self.emit(
                    path,
                    "interrupted",
                    False,
                    f"a {row['job_kind'] or 'backup'} job of {path} was interrupted "
                    "by the daemon stopping; running it again",
                )
                self.table.end_job(
                    path,
                    last_result=None if row["last_result"] == "interrupted" else row["last_result"],
                )
            if row["pending_change"] != "none":
                # A change the previous daemon did not finish: apply it again.
                asyncio.create_task(self._apply_logged(path))
            elif row["state"] in ("watching", "missing"):
                self._start_supervisor(path)
                if interrupted:
                    self.supervisors[path].poke()
                else:
                    catch_up.append(path)
        if catch_up:
            # One task, one entry at a time: thousands of entries must not flood
            # the thread pool that API requests also use.
            self._start_task(self._catch_up_all(catch_up))

    async def _catch_up_all(self, paths: list[str]) -> None:
        for path in paths:
            if path in self.supervisors:
                await self._catch_up(path)

    async def stop(self, grace_s: float = 10.0) -> None:
        """Let running jobs finish for ``grace_s``; record the rest as interrupted."""
        self._stopping = True
        await self.mounts.stop()
        await self.healer.stop()
        running = [lock for lock in self._locks.values() if lock.locked()]
        if running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gate.idle(), grace_s)
        for path, sup in list(self.supervisors.items()):
            await sup.stop()
            row = self.table.get(path)
            if row is not None and row["job_kind"] is not None:
                self.table.end_job(
                    path,
                    last_result="interrupted",
                    last_error="the daemon stopped while the job ran",
                )
        self.supervisors.clear()
        self.onwrite.journals.close_all()
        await self.replicator.stop()
        await self.pool.close()
        await self.indexer.flush()  # the packs workers put, and any the view found
        self.watcher.close()
        self.table.close()

    async def _catch_up(self, path: str) -> None:
        """After a restart, back up a file changed while no daemon watched it.

        Also recounts the entry's versions: an offline restore may have added one.
        """
        names = await asyncio.to_thread(self.repo.version_names, path)
        latest = await asyncio.to_thread(self.repo.latest, path) if names else None
        if self.table.get(path) is not None:
            self.table.set(path, versions=len(names))
        try:
            st = os.stat(path)
        except OSError:
            self.supervisors[path].poke()
            return
        if latest is None or (st.st_size, st.st_mtime_ns) != (latest.size, latest.mtime_ns):
            self.supervisors[path].poke()

    def close_reported(self, path: str, ok: bool) -> None:
        """A close of an on-close entry reported by the library or the interceptor
        (see closes.py)."""
        self.closes.reported(path, ok)

    def poke(self, path: str) -> None:
        """Ask the entry's supervisor (if it runs) to look at the file soon."""
        sup = self.supervisors.get(path)
        if sup is not None:
            sup.poke()

    def corrupt(self, path: str, row: dict[str, Any], detail: str) -> None:
        """Report corruption a capture found; heal it if the entry is auto."""
        self.emit(path, "corrupt", False, f"{path}: {detail}")
        if row["recovery_mode"] == "auto":
            self.schedule_heal(path, detail)

    def _start_task(self, coro: Any) -> None:
        """A background task kept from the garbage collector until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._hooks.add(task)
        task.add_done_callback(self._hooks.discard)

    def schedule_heal(self, path: str, reason: str, told: bool = False) -> None:
        """Heal an auto entry soon, outside whatever lock the caller holds.

        ``told``: the program that wrote was told its writes failed (a failed
        close), so the file may be rolled back to its newest good state."""

        async def run() -> None:
            try:
                result = await self.healer.request(path, reason, "auto", told)
            except FiletwinError:
                return
            if not result.get("healed", True):
                # Nothing to heal (the error was transient: the file reads fine and
                # may be newer than its last version): look at it again, so content
                # a failed read kept from being stored is stored now.
                self.poke(path)

        self._start_task(run())

    # events ------------------------------------------------------------
    def emit(self, path: str | None, kind: str, ok: bool, message: str) -> None:
        """Record an event (see events.EventLog.emit: never raises)."""
        self.metrics.event(path, kind, ok)
        self.eventlog.emit(path, kind, ok, message)

    def events(
        self, path: str | None = None, after_id: int = 0, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The event log, with the events not stored yet at its end."""
        return self.eventlog.events(path, after_id, limit)

    async def wait_events(self, after_id: int, path: str | None) -> list[dict[str, Any]]:
        """Events after ``after_id``, waiting until there is at least one."""
        return await self.eventlog.wait(after_id, path)

    def _on_fs_event(self, path: str, mask: int) -> None:
        sup = self.supervisors.get(path)
        if sup is not None:
            sup.on_event(mask)

    def lock_of(self, path: str) -> asyncio.Lock:
        """The entry's lock: its jobs run one at a time."""
        lock = self._locks.get(path)
        if lock is None:
            lock = self._locks[path] = asyncio.Lock()
        return lock

    def _start_supervisor(self, path: str) -> None:
        if path in self.supervisors:
            return
        row = self.table.get(path)
        on_write = row is not None and row["backup_mode"] == "on-write"

        async def run(closed: bool) -> None:
            if on_write:
                await self.onwrite.capture(path, closed)
            else:
                await self.backup(path, cause="close", explicit=False)

        sup = Supervisor(
            path,
            self.watcher,
            self.lock_of(path),
            on_write,
            run,
            lambda: bool(self.onwrite.streams.get(path)),
            Timing(self.config.coalesce_ms / 1000, self.config.capture_quiet_ms / 1000),
        )
        self.supervisors[path] = sup
        sup.start()

    async def _stop_supervisor(self, path: str) -> None:
        sup = self.supervisors.pop(path, None)
        if sup is not None:
            await sup.stop()

    # the reconciler ----------------------------------------------------
    async def _apply_logged(self, path: str) -> None:
        try:
            await self.apply(path)
        except FiletwinError as e:
            log.warning("applying the pending change of %s: %s", path, e)

    async def apply(self, path: str) -> None:
        """Carry out the entry's pending change, then clear it."""
        self.onwrite.forget_policy(path)
        row = self.table.get(path)
        if row is None:
            return
        change = row["pending_change"]
        if change in ("add", "resume"):
            self.table.set(path, state="watching")
            self._start_supervisor(path)
            cause = "initial" if change == "add" else "manual"
            # The change stays pending (visible in status) until its first version
            # is taken; a daemon killed meanwhile applies it again at start.
            try:
                if os.path.lexists(path):
                    await self.backup(path, cause=cause, explicit=True)
                    if row["backup_mode"] == "on-write":
                        await self.onwrite.refresh_shadow(path)
                else:
                    self.set_missing(path)
            finally:
                if self.table.get(path) is not None:
                    self.table.set(path, pending_change="none")
        elif change == "update":
            await self._stop_supervisor(path)
            if row["backup_mode"] == "on-write":
                # The journal starts from the file as it is now.
                if os.path.exists(path):
                    await self.onwrite.refresh_shadow(path)
            else:
                self.onwrite.forget(path)
            if row["state"] in ("watching", "missing"):
                self._start_supervisor(path)
            self.table.set(path, pending_change="none")
        elif change == "pause":
            await self._stop_supervisor(path)
            self.table.set(path, state="paused", pending_change="none")
        elif change == "delete":
            await self._stop_supervisor(path)
            self.onwrite.forget(path)
            if row["purge"]:
                async with self.gate.exclusive():
                    await asyncio.to_thread(self.repo.purge, path)
                    await asyncio.to_thread(self.repo.gc)
                shutil.rmtree(self.onwrite.journals.directory(path), ignore_errors=True)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.onwrite.shadow_path(path))
            self.table.delete(path)
            lock = self._locks.get(path)
            if lock is not None and not lock.locked():
                del self._locks[path]

    # commands ----------------------------------------------------------
    def entry(self, path: str) -> dict[str, Any]:
        return self.table.require(path)

    def status(self, path: str | None = None) -> list[dict[str, Any]]:
        rows = [self.entry(path)] if path is not None else self.table.all()
        out = []
        for row in rows:
            # A job end the table could not take yet (state directory full) is
            # what happened: show it.
            item = as_json({**row, **self.jobs.deferred(row["path"])})
            item.pop("purge", None)
            live_seq = self.onwrite.journals.known_last_seq(row["path"])
            if live_seq is not None:
                item["journal_seq"] = live_seq
            if self.replicator.replicas:
                item["replicas"] = self.replicator.rows(row["path"])
            out.append(item)
        return out

    async def add(self, paths: list[str], policy: Policy, source: str = "cli") -> dict[str, Any]:
        """``source``: who names the entries, ``cli`` or ``config`` (daemon/reconcile.py)."""
        policy = policy.validated()
        resolved, notes = validate_new_paths(paths, self.table)
        with self.table.transaction():
            for path in resolved:
                self.table.add(path, policy, self.config.repository_location, source)
        # Versions already stored (a path protected before).
        counts = await asyncio.to_thread(self.repo.version_counts, resolved)
        for path in resolved:
            self.table.set(path, versions=counts[path])
            self.emit(
                path,
                "added",
                True,
                f"now protecting {path} ({policy.backup_mode}, {policy.recovery_mode})",
            )
        # First versions run side by side, as many as there are workers.
        results = await asyncio.gather(
            *(self.apply(path) for path in resolved), return_exceptions=True
        )
        failures = []
        for path, result in zip(resolved, results, strict=True):
            if isinstance(result, FiletwinError):
                failures.append(f"{path}: {result}")
            elif isinstance(result, BaseException):
                raise result
        return {"entries": self.status_many(resolved), "messages": notes, "failures": failures}

    def status_many(self, paths: list[str]) -> list[dict[str, Any]]:
        return [self.status(p)[0] for p in paths]

    async def change(self, path: str, change: str, **fields: Any) -> dict[str, Any]:
        """Record ``change`` as pending (with new ``fields``) and apply it now."""
        row = self.entry(path)
        if change == "pause" and row["state"] == "paused":
            return {"entry": self.status(path)[0], "message": f"{path} is already paused"}
        if change == "resume" and row["state"] != "paused":
            return {"entry": self.status(path)[0], "message": f"{path} is not paused"}
        self.table.set(path, pending_change=change, **fields)
        self.emit(path, change, True, f"{change} of {path} requested")
        await self.apply(path)
        after = self.table.get(path)
        return {"entry": as_json(after) if after else None, "message": f"{change}: {path}"}

    async def update(self, path: str, changes: dict[str, Any]) -> dict[str, Any]:
        row = self.entry(path)
        policy = Table.policy_of(row).updated(changes)
        result = await self.change(
            path,
            "update",
            backup_mode=policy.backup_mode,
            recovery_mode=policy.recovery_mode,
            retries=policy.retries,
            timeout_s=policy.timeout_s,
            keep=policy.keep,
            sync_mode=policy.sync_mode,
            keep_within_s=policy.keep_within_s,
            keep_hourly=policy.keep_hourly,
            keep_daily=policy.keep_daily,
            keep_weekly=policy.keep_weekly,
            keep_monthly=policy.keep_monthly,
        )
        # New retention rules apply at once, as restic's forget does.
        await self.retention.retain(path, policy.keep)
        return result

    def set_missing(self, path: str) -> None:
        row = self.table.get(path)
        if row is not None and row["state"] != "missing":
            self.table.set(path, state="missing")
            self.emit(
                path,
                "missing",
                False,
                f"{path} has disappeared; a version is taken when it comes back",
            )

    async def backup(self, path: str, cause: str, explicit: bool) -> Manifest | None:
        """Run a backup job of ``path`` with retries; commit the version it read.

        ``explicit`` requests (add, `filetwin backup`) raise on failure; capture-driven
        ones record the failure and return None.
        """
        row = self.entry(path)
        if row["backup_mode"] == "on-write" and cause == "manual":
            # An on-write entry's versions hold its journal's state: fold it.
            try:
                manifest = await self.onwrite.checkpoint(path)
            except FiletwinError as e:
                # The journal cannot be folded: a version of the live file is the
                # next base, so protection goes on.
                log.warning("checkpoint of %s failed (%s); backing up the live file", path, e)
                manifest = None
            if manifest is not None:
                return manifest
        async with self.lock_of(path):
            return await self._backup_locked(path, cause, explicit, self.supervisors.get(path))

    async def _backup_locked(
        self, path: str, cause: str, explicit: bool, sup: Supervisor | None
    ) -> Manifest | None:
        row = self.entry(path)
        unstable = 0
        while True:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                self.set_missing(path)
                if explicit:
                    raise NotFound(f"{path} does not exist; nothing to back up") from None
                return None
            if row["state"] == "missing":
                self.table.set(path, state="watching")
                self.emit(path, "returned", True, f"{path} is back")
                row["state"] = "watching"
            self.watcher.drain()
            generation = sup.generation if sup is not None else 0
            job = Job.for_entry(
                "backup",
                path,
                row,
                self.config,
                {
                    "kind": "prepare",
                    "cause": cause,
                    # An on-write entry's version read from the live file stands for
                    # its journal so far (at add, resume, or with nothing journaled since).
                    "journal_seq": (
                        self.onwrite.last_seq(path) if row["backup_mode"] == "on-write" else 0
                    ),
                    # A path add found no version of: the worker need not look
                    # (a listing, on S3 a request); nothing else stores one meanwhile.
                    "new": cause == "initial" and not row["versions"],
                },
                size=st.st_size,
                # An add's first versions of small files share packs (batcher.py).
                batch=cause == "initial",
            )

            async def finish(
                answer: dict[str, Any], generation: int = generation, unstable: int = unstable
            ) -> Done[Manifest | None]:
                manifest = Manifest.from_json(answer["manifest"])
                self.watcher.drain()
                if sup is not None and sup.failed_close is not None:
                    # What a failed close left is not a version the program meant.
                    if await sup.failed_close == manifest.hash:
                        message = (
                            f"{path} holds what a close that failed left: not stored as a "
                            "version (a good close of new content is)"
                        )
                        self.emit(path, "not-stored", False, message)
                        if explicit:
                            raise Conflict(message)
                        raise Abandon(None)
                    sup.failed_close = None
                # A write came after the last close and the writer still holds
                # the file (open O_TRUNC, then a pause): a mid-save state is never
                # a version. Its close starts the next job.
                if not explicit and sup is not None:
                    held: bool | None = await asyncio.to_thread(open_for_writing, path)
                    if held and not sup.writing:
                        # A writer holds the file but no write since the last close
                        # was reported. inotify reports a truncate at the end of the
                        # syscall, after the empty file is visible: under load the
                        # read can fall in between. Let a late event arrive.
                        await asyncio.sleep(EVENT_SETTLE_S)
                        self.watcher.drain()
                    if held and sup.writing:
                        raise Abandon(None)
                # Only now, after the lease check: what a writer wrote before
                # closing is in the event queue, so a read made while it held the
                # file (the empty middle of a save) shows as a change. Checked
                # before the lease, a writer that wrote and closed in between
                # left that empty read looking like a closed state.
                self.watcher.drain()
                changed = sup is not None and sup.generation != generation
                if changed and (not explicit or unstable < UNSTABLE_RETRIES):
                    # The file changed while it was read: what was read may be
                    # torn. A newer close is queued; an explicit request reads again.
                    raise Abandon(_UNSTABLE)
                if answer.get("suspect") and cause in ("close", "manual"):
                    self.corrupt(
                        path,
                        row,
                        "its content changed but its size and "
                        "mtime did not (silent corruption); not stored",
                    )
                    if explicit:
                        # Refused, not failed: storing it would keep the corruption.
                        raise Conflict(
                            f"{path} looks corrupted: its content changed without its "
                            "mtime; not stored. Run `filetwin verify`"
                        )
                    raise Abandon(None)
                if not explicit and manifest.unchanged and await self._echo_of_restore(path):
                    # The file holds what a restore in place just put back: that
                    # version is already its newest state (Manifest.replaced_by).
                    raise Abandon(None)
                manifest = await asyncio.to_thread(self.repo.commit, manifest)
                if sup is not None:
                    sup.committed()
                return Done(manifest, self.committed_fields(path, manifest))

            try:
                manifest = await self.jobs.run(job, finish)
            except SourceError as e:
                # The protected file failed to read: its damaged content is never
                # stored; an auto entry is healed from its twin.
                if e.errno in IO_ERRNOS:
                    self.emit(path, "read-error", False, f"reading {path} for a backup failed: {e}")
                    if row["recovery_mode"] == "auto":
                        self.schedule_heal(path, f"read error while backing up: {e}")
                if explicit:
                    raise
                return None
            except FiletwinError:
                # Chunks stored by the failed attempts are referenced by nothing.
                self.retention.schedule_gc()
                if explicit:
                    raise
                return None
            if manifest is _UNSTABLE:
                unstable += 1
                if not explicit:
                    return None
                continue
            if manifest is not None:
                await self.announce(path, manifest, row)
            return manifest

    def committed_fields(self, path: str, manifest: Manifest) -> dict[str, Any]:
        """The table fields a committed version sets."""
        current = self.table.get(path)
        return {
            "last_version": manifest.id,
            "last_backup_at": manifest.time,
            "last_good_hash": manifest.hash,
            "size": manifest.size,
            "versions": (current["versions"] if current else 0) + 1,
        }

    async def announce(self, path: str, manifest: Manifest, row: dict[str, Any]) -> None:
        """The event of a committed version, then the entry's retention."""
        self.replicator.committed(path)
        same = " (same content as the previous version)" if manifest.unchanged else ""
        self.emit(
            path,
            "backup",
            True,
            f"version {manifest.id} of {path} stored, {manifest.size} bytes, "
            f"cause {manifest.cause}{same}",
        )
        await self.retention.retain(path, row["keep"])

    async def _echo_of_restore(self, path: str) -> bool:
        """Whether the newest version of ``path`` is one a restore in place kept
        aside naming the version it put back (an unchanged read is its echo)."""
        newest = await asyncio.to_thread(self.repo.newest, path)
        return newest is not None and bool(newest.replaced_by)

    async def restore(
        self, path: str, version: str | None, at: str | None, to: str | None
    ) -> dict[str, Any]:
        """Rebuild a version or moment of ``path`` in place or at ``to``, as a job
        of the entry (shown in status, under its deadline, retried)."""
        job = Job.for_entry(
            "restore",
            path,
            self.table.get(path),
            self.config,
            {
                "kind": "restore",
                "version": version,
                "at": at,
                "to": to,
                "aside_dir": str(self.config.aside_dir),
                "journal_dir": str(self.onwrite.journals.directory(path)),
            },
        )
        result = await self.jobs.run(job, result_of)
        kept = ""
        if result["kept_version"]:
            # The worker stored the replaced content as a version: count it.
            await self.retention.recount(path)
            kept = f"; the replaced content is kept as version {result['kept_version']}"
        self.emit(
            path,
            "restore",
            True,
            f"restored version {result['version']} of {path} to {result['target']}{kept}",
        )
        return result
