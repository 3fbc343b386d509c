"""Repository check: does every version still have everything it needs to restore?"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from filetwin.errors import CorruptObject, ObjectNotFound
from filetwin.repo.chunks import chunk_name, decode_chunk
from filetwin.repo.chunkstore import LOOSE
from filetwin.repo.manifest import MANIFESTS, Manifest
from filetwin.repo.packs import INDEX, list_packs, pack_name, read_index
from filetwin.repo.repository import Repository


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the repository."""

    #: "bad-manifest" | "bad-index" | "corrupt-pack" | "missing-chunk" |
    #: "corrupt-chunk" | "missing-version"
    kind: str
    object: str  # backend object name of the damaged or missing object
    message: str  # for a person: names the object, and the versions it breaks


#: how many times a check is run again when a gc changed the repository under it
ATTEMPTS = 5


def check_repository(
    repo: Repository,
    read_data: bool = False,
    progress: Callable[[int, int], None] | None = None,
    expected: Mapping[str, str] | None = None,
) -> list[Problem]:
    """Check the repository; return its problems (empty list = healthy).

    Every manifest must open (authenticated when the repository is encrypted)
    and match its name and id; every index object must open and match its
    name; every chunk a manifest references must be found in a pack (or,
    written before packs, as a loose object). With ``read_data`` every pack
    holding a referenced chunk is read whole and checked against its name, and
    every referenced chunk is opened, decompressed and hashed against its id,
    each once however many versions share it. ``expected`` maps paths to the
    id of the newest version the state directory recorded: a missing one
    (deleted, or the entry rolled back) is a problem. ``progress(done,
    total)`` is called as work is done. Read-only: it never repairs anything.

    A daemon may gc the repository while this runs (check takes no lock): gc
    replaces index objects and deletes packs, so a pack read or listed a moment
    ago can be gone, which would look like a missing chunk. Packs and index
    objects are content-named and never modified, so gc shows only as a change
    of the index objects or a pack gone; when the problems found coincide with
    such a change, the check runs again (up to ATTEMPTS times). Problems found
    while the repository stood still are what is reported.
    """
    problems: list[Problem] = []
    for _ in range(ATTEMPTS):
        before = _gc_marks(repo)
        problems = _check_once(repo, read_data, progress, expected)
        if not problems or _gc_marks(repo).unchanged_since(before):
            return problems
    return problems


@dataclass(frozen=True)
class _GcMarks:
    """What a gc changes: the index objects, and the packs (it only deletes)."""

    index_objects: frozenset[str]
    packs: frozenset[str]

    def unchanged_since(self, before: _GcMarks) -> bool:
        return self.index_objects == before.index_objects and before.packs <= self.packs


def _gc_marks(repo: Repository) -> _GcMarks:
    return _GcMarks(frozenset(repo.backend.list(INDEX)), frozenset(list_packs(repo.backend)))


def _check_once(
    repo: Repository,
    read_data: bool,
    progress: Callable[[int, int], None] | None,
    expected: Mapping[str, str] | None,
) -> list[Problem]:
    problems: list[Problem] = []
    manifest_names = sorted(repo.backend.list(MANIFESTS))
    users: dict[str, list[Manifest]] = {}  # chunk id -> manifests referencing it
    ids_by_path: dict[str, set[str]] = {}
    total = len(manifest_names)
    done = 0
    for name in manifest_names:
        try:
            m = repo.load_manifest(name)
        except ObjectNotFound:
            m = None  # deleted by retention while we ran: not a problem
        except CorruptObject as e:
            problems.append(Problem("bad-manifest", name, str(e)))
            m = None
        if m is not None:
            ids_by_path.setdefault(m.path, set()).add(m.id)
            for cid in dict.fromkeys(m.chunks):
                users.setdefault(cid, []).append(m)
        done += 1
        if progress:
            progress(done, total)

    for path, vid in sorted((expected or {}).items()):
        if vid and vid not in ids_by_path.get(path, set()):
            problems.append(
                Problem(
                    "missing-version",
                    f"{MANIFESTS}{repo.entry_key(path)}/",
                    f"version {vid} of {path}, recorded as its newest, is not in the "
                    "repository: deleted or rolled back behind filetwin's back",
                )
            )

    store = repo.chunks
    store.load()
    for name, error in sorted(store.damaged.items()):
        kind = "bad-index" if name.startswith("index/") else "corrupt-pack"
        problems.append(Problem(kind, name, str(error)))
    index = store.locations()
    present_packs = set(list_packs(repo.backend))
    loose = {n.rsplit("/", 1)[-1] for n in repo.backend.list(LOOSE)}
    by_pack: dict[str, list[str]] = {}
    for cid, ms in users.items():
        loc = index.get(cid)
        if loc is not None and loc.pack in present_packs:
            by_pack.setdefault(loc.pack, []).append(cid)
        elif cid not in loose:
            where = pack_name(loc.pack) if loc is not None else chunk_name(cid)
            for m in ms:
                problems.append(Problem("missing-chunk", where, _msg(repo, m, cid, "missing")))
    # An index object naming packs that do not exist (and whose chunks were not
    # reported missing above: another pack holds them) was rolled back to one
    # gc had deleted, or its packs were deleted behind filetwin's back.
    named = {p.object for p in problems}
    for name in sorted(store.index_objects()):
        try:
            entries = read_index(repo.backend, repo.keys, name)
        except (CorruptObject, ObjectNotFound):
            continue  # damaged ones are reported above; gone since: nothing to say
        absent = {loc.pack for loc in entries.values()} - present_packs
        gone = sorted({pack_name(pid) for pid in absent} - named)
        if gone:
            problems.append(
                Problem(
                    "bad-index",
                    name,
                    f"index {name} names {len(gone)} pack(s) that do not exist (first: "
                    f"{gone[0]}): an index object rolled back, or packs deleted behind "
                    "filetwin's back",
                )
            )
    if not read_data:
        return problems

    total += sum(len(c) for c in by_pack.values()) + sum(1 for c in users if c not in index)
    for pid in sorted(by_pack):
        name = pack_name(pid)
        try:
            store.reader.pack(pid)
        except (CorruptObject, ObjectNotFound) as e:
            problems.append(Problem("corrupt-pack", name, str(e)))
            for cid in by_pack[pid]:
                for m in users[cid]:
                    problems.append(
                        Problem("corrupt-chunk", name, _msg(repo, m, cid, f"unreadable ({e})"))
                    )
            done += len(by_pack[pid])
            continue
        for cid in by_pack[pid]:
            try:
                store.reader.read_chunk(cid, index[cid])
            except (CorruptObject, ObjectNotFound) as e:
                for m in users[cid]:
                    problems.append(
                        Problem("corrupt-chunk", name, _msg(repo, m, cid, f"corrupt ({e})"))
                    )
            done += 1
            if progress:
                progress(done, total)
    for cid in sorted(c for c in users if c not in index and c in loose):
        try:
            decode_chunk(cid, repo.backend.get(chunk_name(cid)))
        except (CorruptObject, ObjectNotFound) as e:
            for m in users[cid]:
                problems.append(
                    Problem("corrupt-chunk", chunk_name(cid), _msg(repo, m, cid, f"corrupt ({e})"))
                )
        done += 1
        if progress:
            progress(done, total)
    return problems


def _msg(repo: Repository, m: Manifest, cid: str, what: str) -> str:
    return f"version {m.id} of {m.path} ({repo.manifest_name(m)}): chunk {cid} is {what}"
