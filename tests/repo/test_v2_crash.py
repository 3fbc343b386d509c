"""Crashes at every durable step of a pack put and of gc lose no committed version.

Each crash is a real process ending with os._exit in the middle of the work (gc's
``crash_at`` seam; for a store, a backend that exits around the Nth put), on a
real repository on disk; the parent then opens the repository afresh, as the
next process would, and checks every committed version bit for bit, runs
``check --read-data``, and runs gc again to the end.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from filetwin.backends import LocalBackend
from filetwin.repo import Manifest, Repository
from filetwin.repo.check import check_repository
from filetwin.repo.crypto import Keys, load_key_file
from filetwin.repo.gc import STEPS, collect
from filetwin.repo.packs import INDEX, list_packs
from tests.helpers import stored_chunks

from .v2kit import all_versions, assert_all_restore, content, make_repository, store, unpack_v1

CRASHED = 70  # gc's os._exit code, and the store child's

CHILD_PRELUDE = """
import os, sys
from pathlib import Path
from filetwin.backends import LocalBackend
from filetwin.repo import Repository
from filetwin.repo.crypto import Keys, load_key_file
loc, key_file, arg, pack_size = sys.argv[1:5]
keys = load_key_file(Path(key_file).read_bytes()) if key_file else Keys.none()
"""

GC_CHILD = (
    CHILD_PRELUDE
    + """
from filetwin.repo.gc import collect
repo = Repository(LocalBackend(Path(loc)), keys=keys, pack_size=int(pack_size))
collect(repo, crash_at=arg)
sys.exit(3)  # the seam did not fire
"""
)

STORE_CHILD = (
    CHILD_PRELUDE
    + """
point, src = arg.split("=", 1)

class Crashing(LocalBackend):
    def put(self, name, data):
        if point == "before-manifest" and name.startswith("manifests/"):
            os._exit(70)
        super().put(name, data)
        if point == "first-pack" and name.startswith("packs/"):
            os._exit(70)
        if point == "after-manifest" and name.startswith("manifests/"):
            os._exit(70)
        if point == "after-index" and name.startswith("index/"):
            os._exit(70)

repo = Repository(Crashing(Path(loc)), keys=keys, pack_size=int(pack_size))
repo.store_file(src, "manual")
repo.save_index()
sys.exit(3)  # the crash point was never reached
"""
)


def run_child(script: str, loc: Path, key_file: Path | None, arg: str, pack_size: int) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", script, str(loc), str(key_file or ""), arg, str(pack_size)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == CRASHED, proc.stderr
    return proc.returncode


def keys_of(key_file: Path | None) -> Keys:
    return load_key_file(key_file.read_bytes()) if key_file else Keys.none()


def open_fresh(loc: Path, key_file: Path | None, pack_size: int) -> Repository:
    return Repository(LocalBackend(loc), keys=keys_of(key_file), pack_size=pack_size)


def loose(loc: Path) -> set[str]:
    return {p.name for p in (loc / "chunks").rglob("*") if p.is_file()}


def index_objects(loc: Path) -> set[str]:
    return set(LocalBackend(loc).list(INDEX))


def packs(loc: Path) -> set[str]:
    return set(list_packs(LocalBackend(loc)))


# -- gc ------------------------------------------------------------------------------

GC_PACK_SIZE = 1024 * 1024


def gc_scenario(tmp_path: Path, mode: str) -> tuple[Path, Path | None, dict[str, Manifest]]:
    """A repository where gc has every kind of work: packs fully dead, packs
    partly dead (versions deleted by retention), indexed and unindexed packs,
    and (unencrypted: made by the v1 code) loose chunks live and dead."""
    loc = tmp_path / "repo"
    key_file = None
    if mode == "none":
        unpack_v1(tmp_path).rename(loc)
        repo = Repository(LocalBackend(loc), pack_size=GC_PACK_SIZE)
    else:
        key_file = tmp_path / "key"
        repo = make_repository(loc, "keyfile", key_file=key_file, pack_size=GC_PACK_SIZE)
    files = tmp_path / "files"
    files.mkdir()
    a = content(1, 900_000)
    store(repo, files / "a", a)  # one pack of several chunks
    store(repo, files / "a", a[:500_000] + content(2, 400_000))  # shares the head
    store(repo, files / "g", content(3, 200_000))
    store(repo, files / "g", content(4, 200_000))  # the first pack of g dies whole
    repo.save_index()  # what the daemon does at shutdown: these packs are indexed
    store(repo, files / "h", content(5, 300_000))  # unindexed from here on
    store(repo, files / "h", content(6, 100_000) + content(5, 300_000)[100_000:])
    for path in repo.entries():
        repo.apply_retention(path, 1)
    versions = all_versions(repo)
    assert len(versions) >= 3
    if mode == "none":
        live_loose = {c for m in versions.values() for c in m.chunks} & loose(loc)
        assert live_loose and loose(loc) - live_loose  # both kinds of loose chunks
    return loc, key_file, versions


@pytest.mark.parametrize("mode", ["none", "keyfile"])
@pytest.mark.parametrize("step", STEPS)
def test_gc_crash_at_every_step_loses_nothing(tmp_path: Path, mode: str, step: str) -> None:
    loc, key_file, versions = gc_scenario(tmp_path, mode)
    referenced = {c for m in versions.values() for c in m.chunks}
    packs0, index0, loose0 = packs(loc), index_objects(loc), loose(loc)

    run_child(GC_CHILD, loc, key_file, step, GC_PACK_SIZE)

    # The crash left the repository where the step says (so every step is a
    # different state, each checked below).
    new_packs = packs(loc) - packs0
    assert new_packs, "gc wrote no pack: the scenario has nothing to repack"
    if step == "packs":
        assert packs0 <= packs(loc) and index_objects(loc) == index0
    elif step == "index":
        assert index0 < index_objects(loc) and packs0 <= packs(loc)
    elif step == "old-index":
        assert not index0 & index_objects(loc) and packs0 <= packs(loc)
    elif step == "old-packs":
        assert not packs0 <= packs(loc) and loose(loc) == loose0
    else:
        assert not loose(loc)

    repo = open_fresh(loc, key_file, GC_PACK_SIZE)
    assert_all_restore(repo, versions)
    assert check_repository(repo, read_data=True) == []

    result = collect(repo)  # a second gc completes
    assert result.damaged == []
    repo = open_fresh(loc, key_file, GC_PACK_SIZE)
    assert_all_restore(repo, versions)
    assert check_repository(repo, read_data=True) == []
    assert not loose(loc)
    assert stored_chunks(repo) == referenced  # every dead chunk is gone
    assert len(index_objects(loc)) == 1


# -- a store -------------------------------------------------------------------------

#: every chunk its own pack, so a store of a few chunks makes several packs
TINY_PACKS = 1


def store_scenario(tmp_path: Path, mode: str) -> tuple[Path, Path | None, dict[str, Manifest]]:
    loc = tmp_path / "repo"
    key_file = tmp_path / "key" if mode == "keyfile" else None
    repo = make_repository(loc, mode, key_file=key_file, pack_size=TINY_PACKS)
    files = tmp_path / "files"
    files.mkdir()
    store(repo, files / "a", content(1, 300_000))
    repo.save_index()
    store(repo, files / "b", content(2, 300_000))  # committed, in no index object
    return loc, key_file, all_versions(repo)


@pytest.mark.parametrize("mode", ["none", "keyfile"])
@pytest.mark.parametrize("point", ["first-pack", "before-manifest"])
def test_store_killed_before_its_manifest(tmp_path: Path, mode: str, point: str) -> None:
    """Killed between its pack puts, or after them but before the manifest: the
    version does not exist, everything committed before restores, and gc
    collects the orphan packs."""
    loc, key_file, versions = store_scenario(tmp_path, mode)
    packs0, index0 = packs(loc), index_objects(loc)
    src = tmp_path / "files" / "new"
    src.write_bytes(content(9, 2_500_000))  # at least three chunks: three packs

    run_child(STORE_CHILD, loc, key_file, f"{point}={src}", TINY_PACKS)

    orphans = packs(loc) - packs0
    # Four threads put packs: a few may land before the first put's exit.
    assert len(orphans) >= (1 if point == "first-pack" else 3)
    assert index_objects(loc) == index0
    repo = open_fresh(loc, key_file, TINY_PACKS)
    assert repo.versions(str(src)) == []
    assert set(all_versions(repo)) == set(versions)
    assert_all_restore(repo, versions)
    assert check_repository(repo, read_data=True) == []

    collect(repo)
    assert not packs(loc) & orphans
    repo = open_fresh(loc, key_file, TINY_PACKS)
    assert_all_restore(repo, versions)
    assert check_repository(repo, read_data=True) == []


@pytest.mark.parametrize("mode", ["none", "keyfile"])
@pytest.mark.parametrize("point", ["after-manifest", "after-index"])
def test_store_killed_after_its_manifest(tmp_path: Path, mode: str, point: str) -> None:
    """Killed once the manifest is durable (before any index object names its
    packs, or after one does): the version restores from a fresh process, the
    index rebuilt from the pack trailers when no index object has it."""
    loc, key_file, versions = store_scenario(tmp_path, mode)
    packs0, index0 = packs(loc), index_objects(loc)
    src = tmp_path / "files" / "new"
    data = content(9, 2_500_000)
    src.write_bytes(data)

    run_child(STORE_CHILD, loc, key_file, f"{point}={src}", TINY_PACKS)

    new = packs(loc) - packs0
    assert len(new) >= 3
    if point == "after-manifest":
        assert index_objects(loc) == index0  # nothing indexes the new packs
    else:
        assert len(index_objects(loc)) == len(index0) + 1
    repo = open_fresh(loc, key_file, TINY_PACKS)
    [m] = repo.versions(str(src))
    assert b"".join(repo.read_version(m)) == data
    if point == "after-manifest":
        assert repo.chunks.unindexed() >= len(new)  # found by their trailers
    assert_all_restore(repo, versions)
    assert check_repository(repo, read_data=True) == []
    collect(repo)
    repo = open_fresh(loc, key_file, TINY_PACKS)
    assert_all_restore(repo, {**versions, m.id: m})
    assert check_repository(repo, read_data=True) == []
