"""Heal from the nearest copy: chunks the primary lacks or holds damaged are read
from a replica, checked, and the primary is repaired with the replica's pack.

Set as a primary ChunkStore's ``fallback`` (worker processes do it from the
pool's setup message: daemon/worker.py). When a read of chunk ``cid`` fails
in the primary (its pack missing or not matching its name, the chunk not
opening), each replica is asked in the order of the config:

1. the pack the primary's index names, under the same name in the replica's
   copy (packs are content-named: the bytes must hash to the name, so a copy
   is accepted only if it is exactly the pack the primary lost);
2. failing that (no index here names the chunk), the replica's own view (its
   index objects and pack trailers: the copy is a repository).

The chunk is then decoded and checked against its id (sealed blobs also
authenticate under the repository's keys), and only then is the pack put back
in the primary (``ChunkStore.adopt_pack``). A repair that fails (the primary's
disk refuses the put) does not fail the read: the data is good, the failure is
recorded. What was repaired, from where, is kept in ``repaired`` for the
caller (the worker returns it with the job's answer; the daemon makes it an
event ``repaired-from-replica``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import blake3

from ..backends.base import Backend
from ..errors import CorruptObject, FiletwinError, ObjectNotFound
from ..repo.chunkstore import ChunkStore
from ..repo.packs import Location, decode_blob, pack_name


@dataclass
class _Replica:
    name: str
    opener: Callable[[], Backend]
    backend: Backend | None = None
    view: ChunkStore | None = None


@dataclass
class ReplicaFallback:
    """The fallback of ``primary`` on ``replicas`` ((name, backend opener) pairs,
    opened on first use). Thread-safe enough for the worker's one job at a time;
    concurrent reads may repair a pack twice (the same bytes: harmless)."""

    primary: ChunkStore
    replicas: list[tuple[str, Callable[[], Backend]]]
    #: {"object", "replica", "problem", "repaired", "error"} per pack read from a replica
    repaired: list[dict[str, Any]] = field(default_factory=list)
    _open: list[_Replica] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._open = [_Replica(name, opener) for name, opener in self.replicas]

    def install(self) -> ReplicaFallback:
        """Set this as the primary's fallback; return self."""
        self.primary.fallback = self
        return self

    def drain(self) -> list[dict[str, Any]]:
        """What was read from replicas since the last drain (and forget it)."""
        out, self.repaired = self.repaired, []
        return out

    def __call__(self, cid: str, loc: Location | None, error: FiletwinError) -> bytes:
        """The verified data of chunk ``cid`` from the first replica that has it;
        ObjectNotFound if none does (the caller raises its own error then)."""
        problems = []
        for replica in self._open:
            try:
                found = self._from(replica, cid, loc)
            except FiletwinError as e:
                problems.append(f"{replica.name}: {e}")
                continue
            if found is None:
                continue
            pid, pack, data = found
            self._repair(replica, pid, pack, error)
            return data
        raise ObjectNotFound(
            f"chunk {cid}: no replica holds it ({'; '.join(problems) or 'none has it'})"
        )

    def _from(
        self, replica: _Replica, cid: str, loc: Location | None
    ) -> tuple[str, bytes, bytes] | None:
        """(pack id, pack bytes, chunk data) from ``replica``, or None if it lacks it."""
        if replica.backend is None:
            replica.backend = replica.opener()
        if loc is not None:
            try:
                pack = replica.backend.get(pack_name(loc.pack))
            except ObjectNotFound:
                pack = b""
            if pack and blake3.blake3(pack).hexdigest() == loc.pack:
                return loc.pack, pack, _chunk(self.primary, cid, loc, pack)
        # No index here names it, or the replica holds that pack under no such name:
        # the replica's own view (its copy opens as a repository).
        if replica.view is None:
            replica.view = ChunkStore(replica.backend, self.primary.keys)
        view = replica.view
        view.refresh()
        where = view.locations().get(cid)
        if where is None:
            return None
        pack = view.reader.pack(where.pack)  # checked against its name
        return where.pack, pack, _chunk(self.primary, cid, where, pack)

    def _repair(self, replica: _Replica, pid: str, pack: bytes, error: FiletwinError) -> None:
        record: dict[str, Any] = {
            "object": pack_name(pid),
            "replica": replica.name,
            "problem": str(error),
            "repaired": True,
            "error": None,
        }
        try:
            self.primary.adopt_pack(pid, pack)
        except FiletwinError as e:
            record.update(repaired=False, error=str(e))
        self.repaired.append(record)


def _chunk(store: ChunkStore, cid: str, loc: Location, pack: bytes) -> bytes:
    """Chunk ``cid`` at ``loc`` in ``pack``, verified against its id (CorruptObject)."""
    if loc.offset + loc.length > len(pack):
        raise CorruptObject(f"chunk {cid} lies past the end of {pack_name(loc.pack)}")
    data = decode_blob(store.keys, cid, memoryview(pack)[loc.offset : loc.offset + loc.length],
                       pack_name(loc.pack))  # fmt: skip
    if len(data) != loc.raw_length:
        raise CorruptObject(f"chunk {cid} in {pack_name(loc.pack)}: length differs from index")
    return data


def describe(repairs: list[dict[str, Any]]) -> str:
    """One event message for the repairs of one job."""
    parts = []
    for r in repairs:
        done = "put back in the primary" if r["repaired"] else f"NOT put back ({r['error']})"
        parts.append(f"{r['object']} read from replica {r['replica']}, {done} ({r['problem']})")
    return "; ".join(parts)


def opener(spec: dict[str, str]) -> Callable[[], Backend]:
    """A backend opener from a setup entry ``{"name", "location", "endpoint", "region"}``
    (``location``: the host's copy, layout.host_location)."""
    from ..backends import open_backend

    def open_() -> Backend:
        return open_backend(
            spec["location"],
            endpoint_url=spec.get("endpoint") or None,
            region=spec.get("region") or None,
        )

    return open_


def setup_entries(settings: Any, host: str) -> list[dict[str, str]]:
    """The worker setup entries of the config's ``[[replica]]`` tables."""
    from .layout import host_location

    return [
        {
            "name": s.name or s.location,
            "location": host_location(s.location, host),
            "endpoint": s.endpoint,
            "region": s.region,
        }
        for s in settings
    ]


def repairs_event(
    emit: Callable[[str | None, str, bool, str], None],
    job: dict[str, Any],
    answer: dict[str, Any],
) -> None:
    """The daemon's event ``repaired-from-replica`` for a job's answer that names
    packs read from replicas (nothing otherwise)."""
    repairs = answer.get("repaired")
    if repairs:
        ok = all(r["repaired"] for r in repairs)
        emit(job.get("path"), "repaired-from-replica", ok, describe(repairs))
