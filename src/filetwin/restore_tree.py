"""Restore many entries into a directory tree at once: ``filetwin restore --all``.

Each entry is rebuilt by restore_version, exactly as a restore of that one
file (the moment resolved the same way, its content checked against its
hash, written to a temporary file, fsynced and renamed, with no symlink
followed), to ``DEST/<its absolute path>``, as restic's ``restore --target``
lays out a snapshot. What this adds is the order of the work: the entries are
found with one listing of the manifests, and several files are rebuilt at
once, so that on a remote store the round trips of one file overlap the
others' (a restore of hundreds of files from S3 is made of little else).

One entry's failure is its own: it is reported with its error and the others
go on.
"""

from __future__ import annotations

import heapq
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from queue import SimpleQueue
from typing import Any

from .backends.snapshot import ListingSnapshot
from .errors import FiletwinError, NotFound, SourceError, UsageError
from .repo import Repository
from .repo.manifest import MANIFESTS
from .restore import restore_version
from .safeio import open_dir_nofollow

#: entries rebuilt at once: two per core, at most 8. Rebuilding is CPU work
#: (decompressing, hashing, writing) between waits on the store; more threads
#: than that only pass the interpreter lock around (on 2 cores, 8 of them made
#: a restore from S3 of 201 small files 6x the lock handovers, and no faster)
WORKERS = min(8, 2 * (os.cpu_count() or 1))
#: manifests read at a time (small reads: waiting, not work)
LOOKERS = 32
#: packs a restore keeps in memory (whole-pack reads: entries sharing one read it once)
CACHE_PACKS = 2 * WORKERS

#: the journal directory of an entry for the time of its restore (None: no journal)
JournalFor = Callable[[str], AbstractContextManager[Path | None]]


@dataclass
class TreeRestore:
    """What a restore of many entries did."""

    to: str
    restored: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "to": self.to,
            "restored": sorted(self.restored, key=lambda r: r["path"]),
            "failed": sorted(self.failed, key=lambda r: r["path"]),
            "files": len(self.restored),
            "bytes": sum(r["size"] for r in self.restored),
        }


def snapshot_of(repo: Repository) -> Repository:
    """``repo`` read through a ListingSnapshot of its manifests and journal objects:
    for a reader of many entries that needs no news of changes made meanwhile."""
    from .replicas.layout import JOURNALS

    backend = ListingSnapshot(repo.backend, (MANIFESTS, JOURNALS), immutable=(MANIFESTS,))
    out = Repository(backend, repo.clock, keys=repo.keys, cache_dir=repo.chunks.cache_dir)
    out.chunks.reader.cache_packs = CACHE_PACKS
    out.chunks.fallback = repo.chunks.fallback
    return out


def target_of(to: str, entry: str) -> str:
    """Where ``entry`` goes inside the tree rooted at ``to``."""
    return os.path.join(to, entry.lstrip("/"))


def make_dirs(directory: str) -> None:
    """Create absolute ``directory`` and its missing parents without following any
    symlink on the way (UnsafePath naming the first one met; SourceError when
    the destination's file system refuses)."""
    try:
        os.close(open_dir_nofollow(directory, create=True))
    except OSError as e:
        raise SourceError(f"cannot create directory {directory}: {e.strerror}", e.errno) from e


def restore_tree(
    repo: Repository,
    to: str,
    *,
    under: str | None = None,
    at: str | None = None,
    journal_for: JournalFor,
    read_only: bool = False,
    workers: int = WORKERS,
    on_total: Callable[[int], None] | None = None,
    on_done: Callable[[str | None, dict[str, Any] | None], None] | None = None,
) -> TreeRestore:
    """Restore every entry of ``repo`` (those inside directory ``under``, or that
    one file, when given) to ``to/<entry>``: the newest state, or the moment
    ``at``; ``workers`` at a time.

    The manifests are listed once; ``on_total(n)`` then gets the number of
    entries in the repository. Each entry's newest manifest is read,
    ``LOOKERS`` at a time (it names the entry's path and size), while the
    entries wanted are restored, the largest of those read first.
    ``on_done(entry or None, result or None)`` after each entry, from the
    calling thread (None: not under ``under``). ``read_only`` (a replica's
    copy): an entry whose target is its own file fails instead of being
    restored in place. Directories are made only for entries restored:
    NotFound (nothing written) when no entry is under ``under``; UnsafePath
    when a symlink stands in the existing part of ``to``; everything else is
    per entry, in ``failed``.
    """
    if not to:
        raise UsageError("a restore of several entries needs --to DIR")
    to = os.path.abspath(to)
    _check_destination(to)
    top = None if under is None else os.path.abspath(under)
    groups = list(repo.manifests_by_entry().values())
    if on_total is not None:
        on_total(len(groups))
    done = TreeRestore(to)
    # Directories this run made (or found): made once, not once per file. The
    # restore's own no-follow walk still checks each one as it writes.
    made: set[str] = set()

    def one(entry: str) -> dict[str, Any]:
        target = target_of(to, entry)
        try:
            if read_only and os.path.abspath(target) == entry:
                raise UsageError(
                    f"{target} is the entry's own file: a restore from a replica writes elsewhere"
                )
            directory = os.path.dirname(target)
            if directory not in made:
                make_dirs(directory)
                made.add(directory)
            with journal_for(entry) as jdir:
                jpath = None if jdir is None else str(jdir)
                return restore_version(repo, entry, at=at, to=target, journal_dir=jpath)
        except (FiletwinError, OSError) as e:
            raise _Failed(entry, e) from e

    # Lookers read each entry's newest manifest (small reads, many at a time:
    # its path says whether it is wanted, its size when to start it) and queue
    # it; restorers take the largest queued. A large file started last would be
    # restored alone at the end, on one core, while the others sit idle.
    queue = _Largest(len(groups))
    outcomes: SimpleQueue[_Outcome] = SimpleQueue()

    def look(names: list[str]) -> None:
        outcome: _Outcome | None = None
        try:
            m = repo.newest_of(names)
            if m is None or (top is not None and not _inside(m.path, top)):
                outcome = _Outcome(None)
            else:
                queue.put(m.size, m.path)
        except FiletwinError as e:
            outcome = _Outcome(None, failure=_Failed(f"<entry of {names[-1]}>", e))
        except BaseException as e:
            outcome = _Outcome(None, crash=e)
        finally:
            queue.looked()
            if outcome is not None:
                outcomes.put(outcome)

    def restorer() -> None:
        while (entry := queue.take()) is not None:
            try:
                outcomes.put(_Outcome(entry, result=one(entry)))
            except _Failed as f:
                outcomes.put(_Outcome(entry, failure=f))
            except BaseException as e:
                outcomes.put(_Outcome(entry, crash=e))

    with (
        ThreadPoolExecutor(LOOKERS, thread_name_prefix="restore-look") as lookers,
        ThreadPoolExecutor(max(1, workers), thread_name_prefix="restore") as restorers,
    ):
        for names in groups:
            lookers.submit(look, names)
        for _ in range(max(1, workers)):
            restorers.submit(restorer)
        try:
            for _ in groups:
                o = outcomes.get()
                if o.crash is not None:
                    raise o.crash
                if o.failure is not None:
                    done.failed.append(o.failure.as_json())
                    if on_done is not None:
                        on_done(o.failure.entry, None)
                else:
                    if o.result is not None:
                        done.restored.append(o.result)
                    if on_done is not None:
                        on_done(o.entry, o.result)
        except BaseException:
            # A bug, or Ctrl-C: the restorers finish the files they are writing
            # and start no more.
            queue.cancel()
            raise
    if not done.restored and not done.failed:
        where = f" under {top}" if top is not None else ""
        raise NotFound(f"no entry{where} has versions in {repo.backend.location}")
    return done


class _Failed(Exception):
    """One entry's failure, with the entry it belongs to."""

    def __init__(self, entry: str, error: BaseException) -> None:
        super().__init__(entry)
        self.entry = entry
        self.error = error

    def as_json(self) -> dict[str, Any]:
        e = self.error
        message = e.message if isinstance(e, FiletwinError) else str(e)
        return {"path": self.entry, "error": message, "type": type(e).__name__}


@dataclass
class _Outcome:
    """What became of one entry: restored (``result``), not wanted (neither),
    failed (``failure``), or a bug (``crash``, raised again by the caller)."""

    entry: str | None
    result: dict[str, Any] | None = None
    failure: _Failed | None = None
    crash: BaseException | None = None


class _Largest:
    """Entries to restore, the largest first; ``take`` waits while lookers still
    have entries to add, and returns None once they are done and it is empty
    (or after ``cancel``)."""

    def __init__(self, lookers_left: int) -> None:
        self._heap: list[tuple[int, int, str]] = []
        self._left = lookers_left
        self._cancelled = False
        self._n = 0
        self._cond = threading.Condition()

    def put(self, size: int, entry: str) -> None:
        with self._cond:
            self._n += 1
            heapq.heappush(self._heap, (-size, self._n, entry))
            self._cond.notify()

    def looked(self) -> None:
        """One look is over (whether or not it put an entry)."""
        with self._cond:
            self._left -= 1
            if self._left <= 0:
                self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    def take(self) -> str | None:
        with self._cond:
            while not self._heap and self._left > 0 and not self._cancelled:
                self._cond.wait()
            if self._cancelled or not self._heap:
                return None
            return heapq.heappop(self._heap)[2]


def _inside(entry: str, top: str) -> bool:
    return entry == top or entry.startswith(top.rstrip("/") + "/")


def _check_destination(to: str) -> None:
    """UnsafePath when a symlink (or a file) stands in the part of ``to`` that
    exists already; nothing is created here."""
    existing = to
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    os.close(open_dir_nofollow(existing))
