"""Shipping on-write journal records to a replica as immutable journal objects.

The replica's position per entry is the last seq of its newest journal object,
recomputed from a listing at start (``rescan``) and then kept from what was
put. Records are read back from the local journal (they are acknowledged: the
caller names the last acknowledged seq) and put as objects of consecutive
records (layout.py), split at gaps and past ``max_bytes`` of payload.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..backends.base import Backend
from ..errors import CorruptObject, ObjectNotFound
from ..repo.crypto import Keys
from ..repo.journal import Record, iter_records, list_segments
from .layout import (
    JOURNALS,
    encode_segment,
    journal_object,
    open_journal,
    parse_journal_object,
    seal_journal,
)

T = TypeVar("T")

#: payload bytes at most in one journal object
MAX_OBJECT_BYTES = 8 << 20


def first_local_seq(jdir: Path) -> int | None:
    """The first seq the local journal may still hold (its oldest segment's), or None."""
    segs = list_segments(jdir)
    return int(segs[0].name[:20]) if segs else None


def _locked(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def run(self: Shipper, *args: Any, **kwargs: Any) -> T:
        with self.lock:
            return method(self, *args, **kwargs)

    return run


class Shipper:
    """Journal objects of one replica (see module doc). Thread-safe: the replicator
    ships from one thread while its safety pass rescans, verifies and prunes from
    another; each call holds the lock for its whole step."""

    def __init__(self, dst: Backend, keys: Keys, max_bytes: int = MAX_OBJECT_BYTES) -> None:
        self.dst = dst
        self.keys = keys
        self.max_bytes = max_bytes
        #: entry key -> {object name: (first, last)}
        self.objects: dict[str, dict[str, tuple[int, int]]] = {}
        #: the last object verify_some read back
        self._cursor = ""
        self.lock = threading.RLock()

    @_locked
    def rescan(self) -> list[tuple[str, str, int, int]]:
        """Recompute every entry's position from a listing of the replica; return the
        objects it was known to hold and no longer does, as (name, key, first, last)."""
        objects: dict[str, dict[str, tuple[int, int]]] = {}
        for name in self.dst.list(JOURNALS):
            parsed = parse_journal_object(name)
            if parsed is not None:
                objects.setdefault(parsed[0], {})[name] = (parsed[1], parsed[2])
        lost = [
            (name, key, first, last)
            for key, held in self.objects.items()
            for name, (first, last) in held.items()
            if name not in objects.get(key, {})
        ]
        self.objects = objects
        return sorted(lost)

    @_locked
    def verify_some(self, budget: int) -> list[tuple[str, str, int, int]]:
        """Read back journal objects (after the last one checked, wrapping around)
        until ``budget`` bytes were read; return those that do not open as the
        records their name says, as (name, key, first, last), forgotten from
        ``objects`` (see ``reship``)."""
        every = sorted(
            (name, key, first, last)
            for key, held in self.objects.items()
            for name, (first, last) in held.items()
        )
        if not every:
            return []
        start = next((i for i, o in enumerate(every) if o[0] > self._cursor), 0)
        damaged = []
        read = 0
        for obj in every[start:] + every[:start]:
            if read >= budget:
                break
            self._cursor = obj[0]
            try:
                blob = self.dst.get(obj[0])
                read += len(blob)
                open_journal(self.keys, obj[0], blob)
            except (ObjectNotFound, CorruptObject):
                damaged.append(obj)
        for name, key, _first, _last in damaged:
            self.objects.get(key, {}).pop(name, None)
        return damaged

    @_locked
    def reship(self, key: str, jdir: Path, first: int, last: int) -> bool:
        """Put records ``first..last`` of entry ``key`` again (the replica lost or
        damaged their object) from the local journal; False if it no longer holds
        them all (the replica then lacks them for good: the caller says so)."""
        batch: list[Record] = []
        for r in iter_records(jdir, start_seq=first, allow_gaps=True):
            if r.seq > last:
                break
            batch.append(r)
        if [r.seq for r in batch] != list(range(first, last + 1)):
            return False
        self._put(key, batch)
        return True

    def shipped(self, key: str) -> int:
        """The newest seq of entry ``key`` the replica holds (0: none)."""
        ranges = self.objects.get(key)
        return max((last for _f, last in ranges.values()), default=0) if ranges else 0

    @_locked
    def ship(self, key: str, jdir: Path, upto: int) -> int:
        """Put the records after the replica's position up to ``upto``; return the new
        position. Backend errors propagate (what was put before stays shipped)."""
        start = self.shipped(key) + 1
        first = first_local_seq(jdir)
        if first is None or upto < start:
            return start - 1
        start = max(start, first)
        batch: list[Record] = []
        size = 0
        for r in iter_records(jdir, start_seq=start, allow_gaps=True):
            if r.seq > upto:
                break
            if batch and (r.seq != batch[-1].seq + 1 or size + len(r.data) > self.max_bytes):
                self._put(key, batch)
                batch, size = [], 0
            batch.append(r)
            size += len(r.data)
        if batch:
            self._put(key, batch)
        return self.shipped(key)

    def _put(self, key: str, records: list[Record]) -> None:
        name = journal_object(key, records[0].seq, records[-1].seq)
        self.dst.put(name, seal_journal(self.keys, name, encode_segment(records)))
        self.objects.setdefault(key, {})[name] = (records[0].seq, records[-1].seq)

    @_locked
    def prune(self, key: str, below: int | None, only: set[str] | None = None) -> list[str]:
        """Delete the objects of entry ``key`` whose records all lie before ``below``
        (None: every object of the entry), among ``only`` if given; return their names."""
        doomed = [
            name
            for name, (_f, last) in sorted(self.objects.get(key, {}).items())
            if (below is None or last < below) and (only is None or name in only)
        ]
        for name in doomed:
            self.dst.delete(name)
            del self.objects[key][name]
        if key in self.objects and not self.objects[key]:
            del self.objects[key]
        return doomed
