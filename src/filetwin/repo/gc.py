"""Garbage collection of chunks: delete dead packs, repack partly dead and small ones,
move the loose chunks of a repository written before packs into packs.

restic's ``prune --max-unused`` is the model. A pack's dead share is the bytes of
blobs no manifest references (or that another pack holds too) over its bytes.

Order of durable steps, so that a crash at ANY point loses nothing:

1. ``packs``: the live blobs of the packs to rewrite (and referenced loose
   chunks) are copied into new packs, each put durably;
2. ``index``: one new index object naming every live chunk is put;
3. ``old-index``: the index objects it replaces are deleted;
4. ``old-packs``: dead and rewritten packs are deleted;
5. ``loose``: loose chunk objects are deleted.

After 1 the new packs are unindexed duplicates (found by the next load); after
2 both indexes name live packs; after 3 the old packs are unindexed but still
there; 4 and 5 only remove what 2 made unnecessary. The caller must hold off
every writer (the daemon's gate, and Repository's lock which ``collect``
takes): gc decides on a picture of what is referenced.

``crash_at`` (tests only, passed by the caller) ends the process with
``os._exit`` right after the named step, to prove the order above.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from filetwin.errors import CorruptObject, ObjectNotFound
from filetwin.repo.chunks import chunk_name, decode_chunk, is_chunk_id
from filetwin.repo.chunkstore import LOOSE
from filetwin.repo.packs import Location, decode_blob, encode_blob, pack_name

if TYPE_CHECKING:
    from filetwin.repo.repository import Repository

#: a pack with at least this share of dead bytes is rewritten
MAX_UNUSED = 0.10
#: packs smaller than target_size / SMALL_DIVISOR are "small" ...
SMALL_DIVISOR = 16
#: ... and merged once there are this many of them
SMALL_PACKS = 32

STEPS = ("packs", "index", "old-index", "old-packs", "loose")


@dataclass
class GcResult:
    """What one gc did."""

    chunks_removed: int = 0  # dead chunks no longer stored anywhere
    packs_deleted: int = 0  # packs deleted (dead or rewritten)
    packs_written: int = 0  # new packs holding rewritten or moved chunks
    loose_moved: int = 0  # loose chunks moved into packs
    bytes_freed: int = 0  # stored bytes deleted less bytes rewritten
    damaged: list[str] = field(default_factory=list)  # objects left alone: unreadable


def collect(
    repo: Repository,
    *,
    max_unused: float = MAX_UNUSED,
    crash_at: str | None = None,
) -> GcResult:
    """Remove what no manifest references (see module doc); return what was done.

    Raises CorruptObject, deleting nothing, when a manifest cannot be read:
    deleting on an incomplete picture of what is referenced would destroy
    versions. Damaged packs and loose chunks are never deleted (``damaged``).
    """
    if crash_at is not None and crash_at not in STEPS:
        raise ValueError(f"crash_at must be one of {STEPS}")
    result = GcResult()
    store = repo.chunks
    with repo._lock:  # noqa: SLF001 - the repository hands gc its own lock
        referenced = repo.referenced_chunks()
        store.load()
        packs = store.packs()
        index = store.locations()
        result.damaged = sorted(store.damaged)

        # What each pack holds that is live: a chunk is live in the pack the
        # index chose for it (the smallest pack id), and only if referenced.
        live: dict[str, dict[str, Location]] = {pid: {} for pid in packs}
        for cid in referenced:
            loc = index.get(cid)
            if loc is not None:
                live[loc.pack][cid] = loc
        dead_packs = [pid for pid in packs if not live[pid]]
        rewrite: list[str] = []
        small: list[str] = []
        for pid, entries in packs.items():
            if not live[pid]:
                continue
            total = sum(loc.length for loc in entries.values())
            live_bytes = sum(loc.length for loc in live[pid].values())
            if total and (total - live_bytes) / total >= max_unused:
                rewrite.append(pid)
            elif total < store.target_size // SMALL_DIVISOR:
                small.append(pid)
        if len(small) >= SMALL_PACKS:
            rewrite += small

        loose = _loose_ids(repo)
        move = sorted(cid for cid in loose if cid in referenced and cid not in index)

        # 1. new packs
        writer = store.writer()
        moved: dict[str, Location] = {}
        keep_packs: set[str] = set()
        for pid in sorted(rewrite):
            try:
                data = store.reader.pack(pid)
                blobs = {
                    cid: bytes(memoryview(data)[loc.offset : loc.offset + loc.length])
                    for cid, loc in live[pid].items()
                }
                for cid, blob in blobs.items():  # never copy damage into a new pack
                    decode_blob(store.keys, cid, blob, pack_name(pid))
            except (CorruptObject, ObjectNotFound):
                keep_packs.add(pid)
                result.damaged.append(pack_name(pid))
                continue
            for cid, blob in blobs.items():
                moved.update(writer.add_blob(cid, blob, live[pid][cid].raw_length))
        for cid in move:
            try:
                raw = decode_chunk(cid, repo.backend.get(chunk_name(cid)))
            except (CorruptObject, ObjectNotFound):
                result.damaged.append(chunk_name(cid))
                continue
            moved.update(writer.add_blob(cid, encode_blob(store.keys, cid, raw), len(raw)))
            result.loose_moved += 1
        moved.update(writer.flush())
        result.packs_written = len({loc.pack for loc in moved.values()})
        _step("packs", crash_at)

        # 2. and 3. the index
        # A rewritten pack can come out byte for byte as it was (unencrypted, every
        # blob live and in order, or a small pack alone after a flush): it has the
        # same id, so it is the new pack too and must not be deleted as the old one.
        gone = (set(dead_packs) | set(rewrite)) - keep_packs - {loc.pack for loc in moved.values()}
        kept: dict[str, Location] = {}
        for pid, held in packs.items():
            if pid not in gone:
                kept.update(held if pid in keep_packs else live[pid])
        kept.update(moved)
        old_index = store.index_objects()
        if gone or moved or len(old_index) > 1 or store.unindexed():
            store.replace_index(kept, old_index, after_put=lambda: _step("index", crash_at))
        else:
            _step("index", crash_at)
        _step("old-index", crash_at)

        # 4. old packs
        for pid in sorted(gone):
            size = sum(loc.length for loc in packs[pid].values())
            repo.backend.delete(pack_name(pid))
            result.packs_deleted += 1
            result.bytes_freed += size
            result.chunks_removed += sum(1 for cid in packs[pid] if cid not in kept)
        result.bytes_freed -= sum(loc.length for loc in moved.values())
        _step("old-packs", crash_at)

        # 5. loose chunks: moved ones and dead ones
        damaged = set(result.damaged)
        for cid in sorted(loose):
            name = chunk_name(cid)
            if name in damaged or (cid in referenced and cid not in kept):
                continue
            repo.backend.delete(name)
            if cid not in referenced:
                result.chunks_removed += 1
        store.forget_loose()
        _step("loose", crash_at)
        store.load()
    return result


def _loose_ids(repo: Repository) -> set[str]:
    out = set()
    for name in repo.backend.list(LOOSE):
        cid = name.rsplit("/", 1)[-1]
        if is_chunk_id(cid) and name == chunk_name(cid):
            out.add(cid)
    return out


def _step(name: str, crash_at: str | None) -> None:
    if crash_at == name:
        os._exit(70)
