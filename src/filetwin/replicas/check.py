"""What a replica lacks or holds damaged, compared with the primary (``check --replica``).

Read only. Every object of the primary (config, keys, packs, index objects,
loose chunks, manifests) must be on the replica with the same bytes (a pack's
bytes are checked against its name, so a pack is read whole on the replica);
every journal object must open as the records its name says; and every
record the local journal of an entry still holds must be on the replica. An
object the primary gained or lost since the replicator's last pass shows up
too: run it when the replica is caught up (status shows the lag).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import blake3

from ..backends.base import Backend
from ..errors import CorruptObject, ObjectNotFound
from ..repo.check import Problem
from ..repo.chunkstore import LOOSE
from ..repo.journal import iter_records
from ..repo.manifest import MANIFESTS
from ..repo.moments import journal_dir
from ..repo.packs import INDEX, PACKS
from ..repo.repository import Repository
from .layout import JOURNALS, open_journal, parse_journal_object
from .mirror import META


def check_replica(
    primary: Repository,
    replica: Backend,
    journals_root: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Problem]:
    """The problems of ``replica`` (the host's copy) against ``primary``; [] if none.

    Kinds: ``missing-object``, ``damaged-object``, ``damaged-journal``,
    ``missing-records``."""
    problems: list[Problem] = []
    src = primary.backend
    there = set(replica.list(""))
    names = sorted(n for p in (*META, PACKS, LOOSE, INDEX, MANIFESTS) for n in src.list(p))
    for done, name in enumerate(names, 1):
        if progress is not None:
            progress(done, len(names))
        if name not in there:
            problems.append(Problem("missing-object", name, f"{name} is missing on the replica"))
            continue
        try:
            copy = replica.get(name)
        except ObjectNotFound:
            problems.append(Problem("missing-object", name, f"{name} is missing on the replica"))
            continue
        if name.startswith(PACKS):
            ok = blake3.blake3(copy).hexdigest() == name.rsplit("/", 1)[-1]
        else:
            try:
                ok = copy == src.get(name)
            except ObjectNotFound:
                continue  # gone from the primary since listed (retention, gc)
        if not ok:
            problems.append(
                Problem("damaged-object", name, f"{name} on the replica differs from the primary")
            )
    shipped: dict[str, list[tuple[int, int]]] = {}
    for name in sorted(n for n in there if n.startswith(JOURNALS)):
        parsed = parse_journal_object(name)
        if parsed is None:
            continue
        try:
            open_journal(primary.keys, name, replica.get(name))
        except ObjectNotFound:
            continue
        except CorruptObject as e:
            problems.append(Problem("damaged-journal", name, str(e)))
            continue
        shipped.setdefault(parsed[0], []).append((parsed[1], parsed[2]))
    if journals_root is not None:
        problems += _missing_records(primary, journals_root, shipped)
    return problems


def _missing_records(
    primary: Repository, journals_root: Path, shipped: dict[str, list[tuple[int, int]]]
) -> list[Problem]:
    out = []
    for path in primary.entries():
        jdir = journal_dir(journals_root, path)
        if not jdir.is_dir():
            continue
        key = primary.entry_key(path)
        have = shipped.get(key, [])
        missing: list[tuple[int, int]] = []
        for r in iter_records(jdir, allow_gaps=True):
            if any(first <= r.seq <= last for first, last in have):
                continue
            if missing and missing[-1][1] == r.seq - 1:
                missing[-1] = (missing[-1][0], r.seq)
            else:
                missing.append((r.seq, r.seq))
        for first, last in missing:
            name = f"{JOURNALS}{key}/"
            out.append(
                Problem(
                    "missing-records",
                    name,
                    f"journal records {first}..{last} of {path} are not on the replica",
                )
            )
    return out
