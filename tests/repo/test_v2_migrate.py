"""A repository written before pack files (made by that code: tests/data/README.md)
is read as it is, migrated by `filetwin migrate` or by a daemon's first gc, with
every version's id and hash intact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import blake3
import pytest

from filetwin.backends import LocalBackend
from filetwin.repo import Repository
from filetwin.repo import format as fmt
from filetwin.repo.check import check_repository
from filetwin.repo.packs import list_packs
from tests.helpers import Daemon, run_cli, wait_until

from .v2kit import tree, unpack_v1

DATA = Path(__file__).resolve().parent.parent / "data"
#: what the old code stored: path, id, hash, size of every version
V1_VERSIONS: list[dict[str, Any]] = json.loads((DATA / "v1-repository.json").read_text())


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    """The v1 repository, unpacked."""
    return unpack_v1(tmp_path)


def loose(loc: Path) -> list[Path]:
    return (
        [p for p in (loc / "chunks").rglob("*") if p.is_file()] if (loc / "chunks").exists() else []
    )


def assert_v1_versions_intact(loc: Path) -> None:
    """Every version the old code stored is listed with the same id and restores
    to the same hash, read by a fresh view."""
    repo = Repository(LocalBackend(loc))
    listed = {m.id: m for path in repo.entries() for m in repo.versions(path)}
    for v in V1_VERSIONS:
        m = listed[v["id"]]
        assert (m.path, m.hash, m.size) == (v["path"], v["hash"], v["size"])
        data = b"".join(repo.read_version(m))
        assert blake3.blake3(data).hexdigest() == v["hash"] and len(data) == v["size"]


def test_v1_repository_is_read_as_it_is(v1: Path) -> None:
    before = tree(v1)
    assert fmt.read_info(LocalBackend(v1)) == fmt.RepoInfo(1, "", "none")
    assert len(loose(v1)) >= 5
    assert_v1_versions_intact(v1)
    assert check_repository(Repository(LocalBackend(v1)), read_data=True) == []
    assert tree(v1) == before  # reading changed nothing


def config_for(tmp_path: Path, loc: Path) -> tuple[Path, Path]:
    state = tmp_path / "state"
    config = tmp_path / "filetwin.toml"
    config.write_text(f'repository = "{loc}"\n')
    return state, config


def test_migrate_keeps_every_version(v1: Path, tmp_path: Path) -> None:
    state, config = config_for(tmp_path, v1)
    n_loose = len(loose(v1))
    r = run_cli("--state-dir", str(state), "--config", str(config), "migrate", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["from_version"] == 1 and summary["versions"] == len(V1_VERSIONS)
    assert summary["chunks_moved"] == n_loose and summary["damaged"] == []
    assert summary["packs_written"] >= 1

    assert loose(v1) == []
    assert list(list_packs(LocalBackend(v1)))
    info = fmt.read_info(LocalBackend(v1))
    assert info is not None and (info.version, info.encryption) == (2, "none")
    assert json.loads((v1 / "config").read_text())["version"] == 2
    assert_v1_versions_intact(v1)
    r = run_cli("--state-dir", str(state), "--config", str(config), "check", "--read-data")
    assert r.returncode == 0 and "healthy" in r.stdout, r.stdout + r.stderr

    # A second migrate is harmless: nothing to move, nothing rewritten.
    before = tree(v1)
    r = run_cli("--state-dir", str(state), "--config", str(config), "migrate", "--json")
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["from_version"] == 2 and again["chunks_moved"] == 0
    assert again["versions"] == len(V1_VERSIONS)
    assert tree(v1) == before
    assert_v1_versions_intact(v1)


def test_migrate_interrupted_before_config_runs_again(v1: Path, tmp_path: Path) -> None:
    """gc moved the loose chunks but the process ended before ``config`` was
    written: still version 1 (no config), and migrate completes it."""
    from filetwin.repo.gc import collect

    collect(Repository(LocalBackend(v1)))
    assert loose(v1) == [] and not (v1 / "config").exists()
    assert fmt.read_info(LocalBackend(v1)) == fmt.RepoInfo(1, "", "none")
    assert_v1_versions_intact(v1)
    state, config = config_for(tmp_path, v1)
    r = run_cli("--state-dir", str(state), "--config", str(config), "migrate", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["from_version"] == 1
    assert json.loads((v1 / "config").read_text())["version"] == 2
    assert_v1_versions_intact(v1)


def test_daemon_on_unmigrated_v1_repository(v1: Path, tmp_path: Path) -> None:
    """A daemon keeps working on a v1 repository: new versions go to packs, and
    its first gc moves the loose chunks into packs, every old version intact."""
    d = Daemon(tmp_path / "state", {"repository": str(v1), "gc_delay_s": 0.05})
    try:
        d.start()
        f = tmp_path / "f.txt"
        f.write_bytes(b"first\n" * 1000)
        d.client.add(str(f), keep=1)
        wait_until(lambda: list(list_packs(LocalBackend(v1))), what="a pack")
        assert loose(v1), "no gc yet: the loose chunks are still there"
        before = tree(v1)
        r = d.cli("--config", str(d.config_path), "migrate")
        assert r.returncode == 2 and "stop it" in r.stderr, r.stderr
        assert tree(v1) == before
        n_packs = len(list(list_packs(LocalBackend(v1))))
        f.write_bytes(b"second\n" * 1000)  # a new version; retention drops the first: gc
        wait_until(lambda: not loose(v1), what="gc to move the loose chunks")
        assert len(list(list_packs(LocalBackend(v1)))) > n_packs
        assert_v1_versions_intact(v1)
        d.restart()
        [m] = d.client.history(str(f))
        assert m["hash"] == blake3.blake3(b"second\n" * 1000).hexdigest()
    finally:
        if d.proc is not None:
            d.stop()
    assert check_repository(Repository(LocalBackend(v1)), read_data=True) == []
    assert_v1_versions_intact(v1)


def test_init_refuses_a_v1_repository(v1: Path, tmp_path: Path) -> None:
    state, config = config_for(tmp_path, v1)
    before = tree(v1)
    r = run_cli("--state-dir", str(state), "--config", str(config), "init")
    assert r.returncode == 2 and "already holds a repository (version 1" in r.stderr, r.stderr
    assert tree(v1) == before


def test_v1_repository_with_only_packs_left_is_still_one(v1: Path) -> None:
    """Once gc moved its loose chunks, a v1 repository whose manifests were all
    purged holds only packs and index objects until the next gc: it is still a
    repository (never taken for an empty location and created over)."""
    from filetwin.errors import RepositoryError
    from filetwin.repo.gc import collect
    from filetwin.repo.opening import open_repository

    repo = Repository(LocalBackend(v1))
    collect(repo)
    for path in repo.entries():
        repo.purge(path)
    assert loose(v1) == [] and list(list_packs(repo.backend))
    assert fmt.read_info(LocalBackend(v1)) == fmt.RepoInfo(1, "", "none")
    before = tree(v1)
    with pytest.raises(RepositoryError, match="exists unencrypted"):
        open_repository(str(v1), create_mode="repokey", passphrase=lambda: "x")
    assert tree(v1) == before


def test_migrate_leaves_a_damaged_loose_chunk_and_says_so(v1: Path, tmp_path: Path) -> None:
    """A loose chunk that does not verify is not copied into a pack (damage is
    never repacked) nor deleted: migrate names it and exits 1; every version
    that does not use it is intact, and one that does fails to restore."""
    from filetwin.errors import RestoreError

    b_first = next(v for v in V1_VERSIONS if v["path"].endswith("b.bin"))  # one chunk
    repo = Repository(LocalBackend(v1))
    m = repo.find_version(b_first["path"], b_first["id"])
    [cid] = m.chunks
    obj = v1 / "chunks" / cid[:2] / cid
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0x01
    obj.write_bytes(bytes(data))
    state, config = config_for(tmp_path, v1)
    r = run_cli("--state-dir", str(state), "--config", str(config), "migrate")
    assert r.returncode == 1
    assert f"damaged, left in place: chunks/{cid[:2]}/{cid}" in r.stderr, r.stderr
    assert [p.name for p in loose(v1)] == [cid]
    fresh = Repository(LocalBackend(v1))
    with pytest.raises(RestoreError, match=cid):
        b"".join(fresh.read_version(fresh.find_version(m.path, m.id)))
    for v in V1_VERSIONS:
        if v["id"] != m.id:
            got = b"".join(fresh.read_version(fresh.find_version(v["path"], v["id"])))
            assert blake3.blake3(got).hexdigest() == v["hash"]
