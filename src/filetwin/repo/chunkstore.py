"""Where a repository's chunks live, and how to find one: packs through the index.

A ChunkStore is the repository's only way to chunk data (repository.py holds
manifests; packs.py the byte formats). It keeps the union of the repository's
index objects in memory (chunk id -> pack, offset, length) and answers
``has`` (dedup) and ``read`` from it.

Writing (one ``PackWriter`` per job, from ``writer()``): a job's new chunks go
into packs, one durable put per pack; their locations are ``record``-ed here.
Index objects are written lazily: a pack's locations are first "unindexed" and
go into an index object once ``index_every`` packs have gathered (and on
``save_index``, which the daemon calls after gc and at shutdown). The daemon
also indexes the packs its workers report (``adopt(..., index=True)``,
daemon/indexer.py): a worker that puts a few packs a day would otherwise
leave them unindexed, and every process opening the repository would read
each of them whole. A pack put
but never indexed — a worker killed, a crash — is not lost: ``load`` lists the
packs and reads the trailer of every pack no index object names. So the order
of durable steps per job is pack(s), then the manifest; an index object is a
cache of the packs, rebuildable from them alone (``packs.rebuild_index``).

Repositories written before packs keep loose chunks (``chunks/<id[:2]>/<id>``,
one zstd frame each); they stay readable here and are moved into packs by
``filetwin migrate`` (cli_repo.py) or gc (repo/gc.py).

Local cache: with a ``cache_dir`` (in the state directory), index objects read
once are kept there as plain files and read from there next time (they are
immutable and content-named; a cached copy is authenticated again on load).

Thread-safe. Not safe against another process's gc: the daemon's gate keeps
gc away from jobs, and workers drop their view when gc changed the packs
(``generation``).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from filetwin.backends.base import Backend
from filetwin.errors import CorruptObject, FiletwinError, ObjectNotFound
from filetwin.repo.chunks import chunk_name, decode_chunk
from filetwin.repo.crypto import Keys
from filetwin.repo.durable import write_atomic
from filetwin.repo.packs import (
    DEFAULT_TARGET_SIZE,
    INDEX,
    Location,
    PackReader,
    PackWriter,
    _merge,
    decode_index,
    index_name,
    list_packs,
    pack_name,
    parse_pack,
    write_index,
)

LOOSE = "chunks/"

#: the packs are listed again at most this often by ``sync`` (seconds)
LIST_PACKS_S = 10.0

#: index objects are written once this many packs are unindexed
INDEX_EVERY = 64


class ChunkStore:
    """The chunks of one repository: find, read and store them (see module doc)."""

    def __init__(
        self,
        backend: Backend,
        keys: Keys,
        *,
        cache_dir: Path | None = None,
        target_size: int = DEFAULT_TARGET_SIZE,
        index_every: int = INDEX_EVERY,
    ) -> None:
        self.backend = backend
        self.keys = keys
        self.cache_dir = cache_dir
        self.target_size = target_size
        self.index_every = index_every
        # A local directory reads a byte range for the price of a pread: a chunk is
        # read alone there; a remote store reads whole packs, one request each.
        self.reader = PackReader(
            backend, keys, cache_packs=4, ranged=bool(getattr(backend, "cheap_ranges", False))
        )
        self._lock = threading.RLock()
        self._loaded = False
        self._index: dict[str, Location] = {}
        #: index objects merged into _index
        self._index_objects: set[str] = set()
        #: packs known but in no index object yet: their entries
        self._unindexed: dict[str, dict[str, Location]] = {}
        #: every pack the view knows -> all its entries (also chunks another pack wins)
        self._packs: dict[str, dict[str, Location]] = {}
        #: packs seen in the last listing, and those put since by this view
        self._present: set[str] = set()
        #: packs checked to exist since the last sync (the store under way)
        self._verified: set[str] = set()
        #: when the packs were last listed (time.monotonic)
        self._listed_at = 0.0
        #: packs this process put since take_news
        self._news: dict[str, dict[str, Location]] = {}
        #: index objects and packs found damaged at load: object name -> error
        self.damaged: dict[str, FiletwinError] = {}
        self._loose: bool | None = None
        #: where a chunk this repository lacks or holds damaged is read from instead
        #: (replicas/fallback.py): called with the chunk id, its location here (None:
        #: no pack here names it) and the error; returns the verified data or raises
        self.fallback: Callable[[str, Location | None, FiletwinError], bytes] | None = None

    # -- the index -----------------------------------------------------------

    def load(self) -> None:
        """(Re)build the view from the repository: every index object, then every
        pack no index object names. A damaged pack is remembered in ``damaged``
        (check reports it) instead of failing the load: its chunks are missing."""
        with self._lock:
            self._index, self._index_objects = {}, set()
            self._unindexed, self.damaged, self._packs = {}, {}, {}
            self._loose = None
            self._loaded = True
            self._refresh()

    def refresh(self) -> None:
        """Take in index objects and packs that appeared since the last look."""
        with self._lock:
            if not self._loaded:
                self.load()
                return
            self._refresh()

    def _refresh(self) -> None:
        for name in sorted(set(self.backend.list(INDEX)) - self._index_objects):
            if name in self.damaged:
                continue
            try:
                entries = self._read_index(name)
            except ObjectNotFound:
                continue  # replaced by gc since listed
            except CorruptObject as e:
                # The packs it named are found by their trailers below instead.
                self.damaged[name] = e
                continue
            self._take(name, entries)
        present = set(list_packs(self.backend))
        self._listed_at = time.monotonic()
        for pid in sorted(present - set(self._packs)):
            if pack_name(pid) in self.damaged:
                continue
            try:
                # Through the reader: a restore that loads the view then reads
                # chunks of this pack finds it in the reader's cache.
                entries = self.reader.entries(pid)
            except ObjectNotFound:
                continue
            except CorruptObject as e:
                self.damaged[pack_name(pid)] = e
                continue
            self._unindexed[pid] = entries
            self._packs[pid] = dict(entries)
            for cid, loc in entries.items():
                _merge(self._index, cid, loc)
        self._present = present
        self._prefer_present(present)

    def _prefer_present(self, present: set[str]) -> None:
        """A chunk the index places in a pack that does not exist (an index object
        rolled back to one gc had deleted, or a pack deleted behind our back) is
        found in another pack that holds it, if one exists (check reports the
        index object: see check.py)."""
        for pid in set(self._packs) - present:
            for cid in self._packs[pid]:
                loc = self._index.get(cid)
                if loc is None or loc.pack != pid:
                    continue
                alternatives = [
                    held[cid]
                    for other, held in self._packs.items()
                    if other in present and cid in held
                ]
                if alternatives:
                    self._index[cid] = min(alternatives, key=lambda a: a.pack)

    def sync(self) -> None:
        """Rebuild the view if the index objects changed since it was built (one
        listing of index/): gc replaces them whenever it deletes packs, and
        dedup against a pack gc deleted would name a missing chunk. The packs
        themselves are listed again only every LIST_PACKS_S (a listing costs
        milliseconds per thousand packs, on every save): packs other workers
        of the daemon put arrive through ``adopt`` meanwhile. Call before
        storing; gc never runs concurrently with a store (the daemon's gate),
        so the view is right for the store that follows."""
        with self._lock:
            self._verified = set()
            if not self._loaded:
                return
            if set(self.backend.list(INDEX)) != self._index_objects:
                self.load()
            elif time.monotonic() - self._listed_at > LIST_PACKS_S:
                self._refresh()

    def take_news(self) -> list[tuple[str, list[tuple[str, int, int, int]]]]:
        """The packs this process put since the last call, as plain data for
        ``adopt`` in another process (the daemon hands them to its other workers)."""
        with self._lock:
            news, self._news = self._news, {}
        return [
            (pid, [(cid, loc.offset, loc.length, loc.raw_length) for cid, loc in held.items()])
            for pid, held in news.items()
        ]

    def adopt(
        self, news: list[tuple[str, list[tuple[str, int, int, int]]]], *, index: bool = False
    ) -> None:
        """Take in packs another process just put (``take_news`` there): dedup
        against them without listing or reading them.

        ``index``: this view also names them in its next index object
        (``save_index``): the daemon does so for the packs its workers put,
        noted even before its view is loaded (a load lists them anyway)."""
        with self._lock:
            for pid, held in news:
                entries = {c: Location(pid, o, n, r) for c, o, n, r in held}
                known = pid in self._packs
                if index and not (known and pid not in self._unindexed):
                    self._unindexed.setdefault(pid, {}).update(entries)
                if not self._loaded or known:
                    continue  # the first load lists them anyway
                self._packs[pid] = entries
                self._present.add(pid)
                for cid, loc in entries.items():
                    _merge(self._index, cid, loc)

    def _take(self, name: str, entries: dict[str, Location]) -> None:
        self._index_objects.add(name)
        for cid, loc in entries.items():
            _merge(self._index, cid, loc)
            self._packs.setdefault(loc.pack, {})[cid] = loc
        for pid in {loc.pack for loc in entries.values()}:
            self._unindexed.pop(pid, None)

    def _read_index(self, name: str) -> dict[str, Location]:
        cached = self._cache_path(name)
        if cached is not None:
            # A damaged or stale cached copy is not the object: read the object.
            with contextlib.suppress(OSError, CorruptObject):
                return self._open_index(name, cached.read_bytes())
        blob = self.backend.get(name)
        entries = self._open_index(name, blob)
        if cached is not None:
            with contextlib.suppress(OSError, FiletwinError):
                cached.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                write_atomic(cached, blob, 0o600)
        return entries

    def _open_index(self, name: str, blob: bytes) -> dict[str, Location]:
        plain = self.keys.open_sealed("index", name, blob)
        if index_name(self.keys.name_hash(plain)) != name:
            raise CorruptObject(f"index {name} is corrupt: its content does not match its name")
        return decode_index(plain, f"index {name}")

    def _cache_path(self, name: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / name

    def _ensure(self) -> None:
        if not self._loaded:
            self.load()

    def index_objects(self) -> set[str]:
        """The names of the index objects the view holds."""
        with self._lock:
            self._ensure()
            return set(self._index_objects)

    def locations(self) -> dict[str, Location]:
        """A copy of the whole view: chunk id -> where it is."""
        with self._lock:
            self._ensure()
            return dict(self._index)

    def packs(self) -> dict[str, dict[str, Location]]:
        """Every pack the view knows (indexed or not) -> everything it holds."""
        with self._lock:
            self._ensure()
            return {pid: dict(entries) for pid, entries in self._packs.items()}

    def unindexed(self) -> int:
        """How many packs no index object names yet."""
        with self._lock:
            return len(self._unindexed)

    # -- reading -------------------------------------------------------------

    def has(self, cid: str) -> bool:
        """Whether chunk ``cid`` is stored: in a pack the view knows, which is checked
        to exist once per store (``sync`` starts one), or loose. A chunk only an
        index names, in a pack that is gone, is not: a store puts it again, so
        the new version is whole."""
        with self._lock:
            self._ensure()
            loc = self._index.get(cid)
            if loc is not None and loc.pack in self._verified:
                return True
            known = loc is not None and loc.pack in self._present
        if loc is not None and known:
            # Once per pack per store: a pack deleted behind our back since the
            # last listing must not be deduplicated against.
            if self.backend.exists(pack_name(loc.pack)):
                with self._lock:
                    self._verified.add(loc.pack)
                return True
            with self._lock:
                self._present.discard(loc.pack)
        return self._has_loose() and self.backend.exists(chunk_name(cid))

    def _has_loose(self) -> bool:
        if self._loose is None:
            self._loose = next(iter(self.backend.list(LOOSE)), None) is not None
        return self._loose

    def where(self, cid: str) -> str:
        """The object that holds chunk ``cid`` (for messages); refreshes once on a miss."""
        with self._lock:
            self._ensure()
            loc = self._index.get(cid)
            if loc is None:
                self._refresh()
                loc = self._index.get(cid)
        return pack_name(loc.pack) if loc is not None else chunk_name(cid)

    def read(self, cid: str) -> bytes:
        """The raw data of chunk ``cid``, verified against its id.

        ObjectNotFound when no pack (nor loose object) holds it, CorruptObject
        naming the pack or object when what was read does not verify. A pack
        that vanished (gc moved its chunks) makes the view reload once. With a
        ``fallback`` set, a missing or damaged chunk is read through it first
        (its own error if it has none: the original error is raised).
        """
        try:
            return self._read_here(cid)
        except (ObjectNotFound, CorruptObject) as e:
            if self.fallback is None:
                raise
            with self._lock:
                loc = self._index.get(cid)
            try:
                return self.fallback(cid, loc, e)
            except FiletwinError:
                raise e from None

    def adopt_pack(self, pack_id: str, data: bytes) -> None:
        """Put back pack ``pack_id`` (bytes checked against its name by the caller,
        e.g. a replica's copy) and take it into the view. RepositoryError if the
        put fails."""
        entries = parse_pack(self.keys, pack_id, data)
        self.backend.put(pack_name(pack_id), data)
        with self._lock:
            self._ensure()
            self.damaged.pop(pack_name(pack_id), None)
            self._present.add(pack_id)
            if pack_id not in self._packs:
                self._unindexed[pack_id] = dict(entries)
                self._packs[pack_id] = dict(entries)
            for cid, loc in entries.items():
                _merge(self._index, cid, loc)
                if self._index[cid].pack not in self._present:
                    self._index[cid] = loc

    def _read_here(self, cid: str) -> bytes:
        with self._lock:
            self._ensure()
            loc = self._index.get(cid)
            if loc is None:
                self._refresh()
                loc = self._index.get(cid)
        if loc is None:
            if self._has_loose():
                return decode_chunk(cid, self.backend.get(chunk_name(cid)))
            raise ObjectNotFound(f"chunk {cid} is in no pack")
        try:
            return self.reader.read_chunk(cid, loc)
        except ObjectNotFound:
            self.load()
            with self._lock:
                again = self._index.get(cid)
            if again is None or again == loc:
                raise
            return self.reader.read_chunk(cid, again)

    # -- writing -------------------------------------------------------------

    def writer(self) -> PackWriter:
        """A PackWriter for one job (call ``record`` with what it put)."""
        return PackWriter(self.backend, self.keys, self.target_size)

    def record(self, written: dict[str, Location]) -> None:
        """Take in the locations of chunks just put into packs; write an index
        object once ``index_every`` packs are unindexed."""
        if not written:
            return
        with self._lock:
            self._ensure()
            for cid, loc in written.items():
                self._present.add(loc.pack)
                self._verified.add(loc.pack)
                self._unindexed.setdefault(loc.pack, {})[cid] = loc
                self._news.setdefault(loc.pack, {})[cid] = loc
                self._packs.setdefault(loc.pack, {})[cid] = loc
                _merge(self._index, cid, loc)
                if self._index[cid].pack not in self._present:
                    self._index[cid] = loc  # stored again because its pack was gone
            if len(self._unindexed) >= self.index_every:
                self.save_index()

    def save_index(self) -> str | None:
        """Put one index object naming every unindexed pack this view knows; its
        name, or None when there was nothing to index. RepositoryError leaves
        the packs unindexed (still found by ``load``)."""
        with self._lock:
            if not self._unindexed:
                return None
            entries: dict[str, Location] = {}
            for pack_entries in self._unindexed.values():
                entries.update(pack_entries)
            name = write_index(self.backend, self.keys, entries)
            self._take(name, entries)
            return name

    def replace_index(
        self,
        entries: dict[str, Location],
        drop: set[str],
        after_put: Callable[[], None] | None = None,
    ) -> str | None:
        """gc's step: put one index object holding ``entries`` (durable first),
        then delete the index objects ``drop``. The view is reloaded after."""
        name = write_index(self.backend, self.keys, entries) if entries else None
        if after_put is not None:
            after_put()
        for old in sorted(drop - ({name} if name else set())):
            self.backend.delete(old)
            cached = self._cache_path(old)
            if cached is not None:
                with contextlib.suppress(OSError):
                    os.unlink(cached)
        self.load()
        return name

    def forget_loose(self) -> None:
        """Call after loose chunks were moved or deleted (the view re-checks)."""
        with self._lock:
            self._loose = None
