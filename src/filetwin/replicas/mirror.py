"""Copying the primary repository's objects to a replica, in an order that keeps
the replica a valid repository at every moment.

Objects are immutable and content-named (packs, index objects, manifests), so
a copy is "put what the replica lacks, by name"; ``config`` and ``keys/`` are
compared by content (a passphrase change rewrites them). One pass:

1. list the primary's manifests, THEN its packs, index objects and loose
   chunks: a manifest is put after its packs, so every pack a listed manifest
   needs is in the later listing (gc puts a repacked pack before deleting the
   old one);
2. put ``config`` and ``keys/`` first, then packs and loose chunks, then index
   objects, then the manifests (oldest first). A pack that vanished between
   listing and copying (gc) makes the pass copy no manifest: it is run again;
3. deletions, only once everything listed is there: manifests the primary no
   longer has, then index objects, then packs and loose chunks. The replica's
   manifests are then a subset of the primary's, whose chunks are all in packs
   copied before.

The replica's contents are remembered (``known``) from one listing at start,
then from what the mirror put and deleted; ``rescan`` lists again (objects
removed behind our back are then copied again: the replicator's safety pass
does it periodically), and ``verify_some`` reads back a bounded share of the
replica's objects per call, round robin, so that damaged copies are found and
put again over the passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import blake3

from ..backends.base import Backend
from ..errors import ObjectNotFound
from ..repo.chunkstore import LOOSE
from ..repo.manifest import MANIFESTS, Manifest
from ..repo.packs import INDEX, PACKS
from .layout import JOURNALS

META = ("config", "keys/")


@dataclass
class PassResult:
    """What one pass did. ``complete``: everything listed is on the replica."""

    copied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    complete: bool = True
    #: the manifests the primary held when listed
    manifests: list[str] = field(default_factory=list)


def manifest_parts(name: str) -> tuple[str, float, str] | None:
    """(entry key, time, version id) from a manifest's object name."""
    if not name.startswith(MANIFESTS):
        return None
    parts = name[len(MANIFESTS) :].split("/")
    if len(parts) != 2 or not parts[1].endswith(".json"):
        return None
    stamp, _, vid = parts[1][: -len(".json")].partition("-")
    if not stamp.isdigit() or not vid:
        return None
    return parts[0], int(stamp) / 1e9, vid


class Mirror:
    """Keeps ``dst`` a copy of the repository in ``src`` (see module doc). Not thread-safe:
    one pass at a time. Backend errors propagate (the caller retries with backoff)."""

    def __init__(self, src: Backend, dst: Backend) -> None:
        self.src = src
        self.dst = dst
        #: names the replica holds (repository objects only; None: not listed yet)
        self.known: set[str] | None = None
        #: config and keys as last seen on the replica (saves a get per pass)
        self._meta: dict[str, bytes] = {}
        #: the last object verify_some read back
        self._cursor = ""

    def rescan(self) -> list[str]:
        """Recompute what the replica holds from a listing of it; return the names it
        was known to hold and no longer does (removed behind our back)."""
        before = self.known or set()
        self.known = {n for n in self.dst.list("") if not n.startswith(JOURNALS)}
        self._meta = {}
        return sorted(before - self.known)

    def verify_some(self, budget: int) -> list[str]:
        """Read back replica objects (after the last one checked, wrapping around)
        until ``budget`` bytes were read; return those whose copy is damaged (a
        pack not matching its name, another object differing from the primary's).
        They are forgotten from ``known``, so the next ``sync`` puts them again."""
        known = sorted(self.known or ())
        if not known:
            return []
        start = next((i for i, n in enumerate(known) if n > self._cursor), 0)
        order = known[start:] + known[:start]
        damaged: list[str] = []
        read = 0
        for name in order:
            if read >= budget:
                break
            self._cursor = name
            try:
                copy = self.dst.get(name)
            except ObjectNotFound:
                damaged.append(name)
                continue
            read += len(copy)
            if name.startswith(PACKS):
                ok = blake3.blake3(copy).hexdigest() == name.rsplit("/", 1)[-1]
            else:
                try:
                    ok = copy == self.src.get(name)
                except ObjectNotFound:
                    continue  # gone from the primary: a deletion the pass makes
            if not ok:
                damaged.append(name)
        for name in damaged:
            self.known.discard(name)  # type: ignore[union-attr]
            self._meta.pop(name, None)
        return damaged

    def _put(self, name: str, data: bytes, out: PassResult) -> None:
        assert self.known is not None
        self.dst.put(name, data)
        self.known.add(name)
        out.copied.append(name)

    def sync(
        self, *, deletions: bool = True, progress: Callable[[], None] | None = None
    ) -> PassResult:
        """One pass (see module doc). ``progress`` is called after each object put."""
        if self.known is None:
            self.rescan()
        known = self.known
        assert known is not None
        out = PassResult()
        manifests = sorted(self.src.list(MANIFESTS))
        data_objects = sorted(self.src.list(PACKS)) + sorted(self.src.list(LOOSE))
        index = sorted(self.src.list(INDEX))
        meta = sorted(n for prefix in META for n in self.src.list(prefix))
        out.manifests = manifests
        for name in meta:
            try:
                data = self.src.get(name)
            except ObjectNotFound:
                continue
            if name in known and name not in self._meta:
                try:
                    self._meta[name] = self.dst.get(name)
                except ObjectNotFound:
                    known.discard(name)
            if name not in known or self._meta.get(name) != data:
                self._put(name, data, out)
                self._meta[name] = data
        for name in data_objects + index:
            if name in known:
                continue
            try:
                data = self.src.get(name)
            except ObjectNotFound:
                out.complete = False  # gc moved it: list again before any manifest
                continue
            if name.startswith(PACKS) and blake3.blake3(data).hexdigest() != name.rsplit("/")[-1]:
                continue  # damaged in the primary: a bad copy would spoil the good one's place
            self._put(name, data, out)
            if progress is not None:
                progress()
        if not out.complete:
            return out
        for name in manifests:
            if name in known:
                continue
            try:
                data = self.src.get(name)
            except ObjectNotFound:
                continue  # retention removed it since: nothing to copy
            self._put(name, data, out)
            if progress is not None:
                progress()
        if deletions:
            listed_manifests = set(manifests)
            listed_data = set(data_objects) | set(index)
            doomed = sorted(
                n for n in known if n.startswith(MANIFESTS) and n not in listed_manifests
            )
            doomed += sorted(n for n in known if n.startswith(INDEX) and n not in listed_data)
            doomed += sorted(
                n for n in known if n.startswith((PACKS, LOOSE)) and n not in listed_data
            )
            for name in doomed:
                self.dst.delete(name)
                known.discard(name)
                out.deleted.append(name)
        return out

    def sync_entry(
        self, key: str, load: Callable[[str], Manifest], where: Callable[[str], str]
    ) -> list[str] | None:
        """The event-driven step: copy the manifests of entry ``key`` the replica lacks,
        each after the packs (or loose chunks) its chunks are in (``where``: chunk id
        -> object name), listing only that entry's manifests. Returns what it put;
        None when only a full pass will do (the replica not listed yet, or without
        ``config``). Index objects, keys and deletions are left to the full pass
        (packs name their own chunks, so the replica stays a valid repository)."""
        known = self.known
        if known is None or "config" not in known:
            return None
        out = PassResult()
        for name in sorted(self.src.list(f"{MANIFESTS}{key}/")):
            if name in known:
                continue
            try:
                blob = self.src.get(name)
                manifest = load(name)
            except ObjectNotFound:
                continue  # retention removed it since listed
            for obj in sorted({where(cid) for cid in manifest.chunks} - known):
                data = self.src.get(obj)
                if obj.startswith(PACKS) and blake3.blake3(data).hexdigest() != obj.rsplit("/")[-1]:
                    return None  # damaged in the primary: never copied as good here
                self._put(obj, data, out)
            self._put(name, blob, out)
        return out.copied

    def newest_by_key(self) -> dict[str, tuple[float, str]]:
        """Entry key -> (time, id) of the newest version the replica holds."""
        out: dict[str, tuple[float, str]] = {}
        for name in self.known or ():
            parts = manifest_parts(name)
            if parts is not None:
                key, when, vid = parts
                if key not in out or out[key][0] < when:
                    out[key] = (when, vid)
        return out
