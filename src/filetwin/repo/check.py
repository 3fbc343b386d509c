"""Repository check: does every version still have everything it needs to restore?"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from filetwin.errors import CorruptObject, ObjectNotFound
from filetwin.repo.chunks import chunk_name, decode_chunk
from filetwin.repo.repository import CHUNKS, MANIFESTS, Manifest, Repository


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the repository."""

    kind: str  # "missing-chunk" | "corrupt-chunk" | "bad-manifest"
    object: str  # backend object name of the damaged or missing object
    message: str  # for a person: names the manifest/path and the chunk


def check_repository(
    repo: Repository,
    read_data: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[Problem]:
    """Check the repository; return its problems (empty list = healthy).

    Every manifest must parse (and match its name and id); every chunk a
    manifest references must exist.  With ``read_data`` every referenced chunk
    is also read, decompressed and hashed against its id — each chunk once,
    however many versions share it.  ``progress(done, total)`` is called after
    each manifest and, with read_data, each chunk read.  Read-only: it never
    repairs anything.
    """
    problems: list[Problem] = []
    manifest_names = sorted(repo.backend.list(MANIFESTS))
    present = {n.rsplit("/", 1)[-1] for n in repo.backend.list(CHUNKS)}
    users: dict[str, list[Manifest]] = {}  # chunk id -> manifests referencing it
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
            for cid in dict.fromkeys(m.chunks):
                users.setdefault(cid, []).append(m)
        done += 1
        if progress:
            progress(done, total)

    for cid, ms in users.items():
        if cid not in present:
            for m in ms:
                problems.append(Problem("missing-chunk", chunk_name(cid), _msg(m, cid, "missing")))
    if not read_data:
        return problems

    readable = [cid for cid in users if cid in present]
    total += len(readable)
    for cid in readable:
        try:
            decode_chunk(cid, repo.backend.get(chunk_name(cid)))
        except ObjectNotFound:
            for m in users[cid]:
                problems.append(Problem("missing-chunk", chunk_name(cid), _msg(m, cid, "missing")))
        except CorruptObject as e:
            for m in users[cid]:
                problems.append(
                    Problem("corrupt-chunk", chunk_name(cid), _msg(m, cid, f"corrupt ({e})"))
                )
        done += 1
        if progress:
            progress(done, total)
    return problems


def _msg(m: Manifest, cid: str, what: str) -> str:
    return f"version {m.id} of {m.path} ({m.object_name()}): chunk {cid} is {what}"
