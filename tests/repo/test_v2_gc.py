"""gc (repacking) keeps every referenced chunk, also when a pack it writes comes
out identical to one it replaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from filetwin.repo.check import check_repository
from filetwin.repo.gc import SMALL_PACKS, collect
from filetwin.repo.packs import list_packs, pack_name, read_index

from .v2kit import (
    all_versions,
    assert_all_restore,
    content,
    make_repository,
    objects,
    reopen,
    store,
)


@pytest.mark.parametrize("mode", ["none", "keyfile"])
def test_merging_small_packs_keeps_a_pack_rewritten_as_it_was(tmp_path: Path, mode: str) -> None:
    """Small packs are merged into packs of the target size; the last new pack can
    hold exactly the blobs of the last old one. Unencrypted, that is the same
    bytes, so the same id: it was deleted as an old pack, losing its chunk."""
    target = 64 * 1024
    repo = make_repository(tmp_path / "repo", mode, key_file=tmp_path / "key", pack_size=target)
    files = tmp_path / "files"
    files.mkdir()
    # 3,000-byte blobs: 22 fill a 64 KiB pack, so 45 small packs merge as 22 + 22 + 1.
    n = 45
    assert n >= SMALL_PACKS and n % 22 == 1
    for i in range(n):
        store(repo, files / f"f{i}", content(i, 3000))
    repo.save_index()
    versions = all_versions(repo)
    before = set(list_packs(repo.backend))
    assert len(before) == n

    result = collect(repo)
    assert result.packs_written == 3 and result.damaged == []
    after = set(list_packs(repo.backend))
    if mode == "none":
        assert len(after & before) == 1  # the one rewritten byte for byte
    assert len(after) == 3
    fresh = reopen(repo)
    assert_all_restore(fresh, versions)
    assert check_repository(fresh, read_data=True) == []


def test_rewrite_of_a_fully_live_pack(tmp_path: Path) -> None:
    """``max_unused=0`` rewrites every pack, live ones too: unencrypted, a
    one-chunk pack comes out as it was and must survive."""
    repo = make_repository(tmp_path / "repo", "none", pack_size=1024 * 1024)
    m = store(repo, tmp_path / "f", content(1, 200_000))
    collect(repo, max_unused=0.0)
    fresh = reopen(repo)
    assert b"".join(fresh.read_version(m)) == content(1, 200_000)
    assert check_repository(fresh, read_data=True) == []


@pytest.mark.parametrize("mode", ["none", "keyfile"])
def test_index_object_rolled_back_to_one_gc_deleted(tmp_path: Path, mode: str) -> None:
    """An index object gc replaced, put back (a rollback of the index): check
    names it, and reads find each chunk in the pack that exists, never failing
    on the deleted pack the old index names, whichever pack id sorts first."""
    old_won = 0
    # Pack ids are random when encrypted: trials go on (6 at least) until one had
    # the stale index sort first, so the fallback is always exercised.
    for trial in range(40):
        if trial >= 6 and old_won:
            break
        loc = tmp_path / f"repo{trial}"
        repo = make_repository(loc, mode, key_file=tmp_path / f"key{trial}", pack_size=1 << 20)
        f = tmp_path / f"f{trial}"
        head = content(trial, 300_000)
        store(repo, f, head + content(100 + trial, 300_000))
        m2 = store(repo, f, head + content(200 + trial, 300_000))  # shares the head
        repo.save_index()
        old = {p.name: p.read_bytes() for p in objects(loc, "index")}
        repo.apply_retention(str(f), 1)
        collect(repo)  # the first version's pack is rewritten: the head moves
        for name, data in old.items():
            (loc / "index" / name).write_bytes(data)
        fresh = reopen(repo)
        moved = fresh.chunks.locations()[m2.chunks[0]].pack
        old_won += any(
            loc.pack < moved
            for name in old
            for cid, loc in read_index(fresh.backend, fresh.keys, f"index/{name}").items()
            if cid == m2.chunks[0]
        )
        assert b"".join(fresh.read_version(m2)) == head + content(200 + trial, 300_000)
        problems = check_repository(fresh, read_data=True)
        assert {(p.kind, p.object) for p in problems} == {("bad-index", f"index/{n}") for n in old}
    assert old_won, "no trial had the stale index sort first: the fallback went untested"


@pytest.mark.parametrize("mode", ["none", "keyfile"])
@pytest.mark.parametrize("indexed", [True, False])
def test_a_pack_deleted_behind_our_back_is_not_deduplicated_against(
    tmp_path: Path, mode: str, indexed: bool
) -> None:
    """A version stored after a pack vanished (disk damage, a hand) must not name
    chunks only that pack held: they are stored again, so the new version is
    whole, for the long-lived view (the daemon's) and a fresh one alike."""
    repo = make_repository(tmp_path / "repo", mode, key_file=tmp_path / "key")
    data = content(1, 300_000)
    first = store(repo, tmp_path / "a", data)
    if indexed:
        repo.save_index()
    for pid in list_packs(repo.backend):
        repo.backend.delete(pack_name(pid))
    for view in (repo, reopen(repo)):
        m = store(view, tmp_path / "b", data)
        assert b"".join(reopen(repo).read_version(m)) == data
        assert b"".join(view.read_version(m)) == data
    assert b"".join(reopen(repo).read_version(first)) == data  # its chunks exist again
    # The index object still names the vanished pack, unless (unencrypted) the
    # chunks stored again made the very same pack: they are stored by several
    # threads, so the pack's layout, and so its id, is the same only sometimes.
    problems = check_repository(reopen(repo), read_data=True)
    assert all(p.kind == "bad-index" for p in problems)
    if mode == "none":
        assert len(problems) <= int(indexed)
    else:
        assert len(problems) == int(indexed)  # sealed with fresh nonces: never the same
