"""An add of many small files: their first versions share packs (daemon/batcher.py,
Repository.prepare_files), and each entry still gets exactly what a job of its
own would give it (its version, its job columns, its event, its failure)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from filetwin.backends import LocalBackend
from filetwin.errors import CorruptObject, RepositoryError, RestoreError, SourceError
from filetwin.repo import Repository
from filetwin.repo.packs import list_packs
from tests.helpers import Daemon, wait_until


def _write_files(files: Path, n: int) -> dict[Path, bytes]:
    out = {}
    for i in range(n):
        data = random.Random(i).randbytes(1000 + 300 * i)
        f = files / f"f{i:03d}.bin"
        f.write_bytes(data)
        out[f] = data
    return out


def test_an_add_of_many_small_files_shares_packs(
    make_daemon: Callable[..., Daemon], files: Path, tmp_path: Path
) -> None:
    daemon = make_daemon()
    written = _write_files(files, 40)
    daemon.client.add(*written)
    repo_dir = daemon.state_dir / "repository"
    # One pack per job would be 40 packs; batches of a few jobs make a few.
    packs = list(list_packs(LocalBackend(repo_dir)))
    assert 1 <= len(packs) < 10, len(packs)
    for f, data in written.items():
        row = daemon.client.status(f)
        assert row["versions"] == 1 and row["last_result"] == "ok", row
        assert row["last_job_kind"] == "backup" and row["job_kind"] is None, row
        out = tmp_path / "out" / f.name
        out.parent.mkdir(exist_ok=True)
        daemon.client.restore(f, to=out)
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    events = daemon.client.events()
    stored = {e["path"] for e in events if e["kind"] == "backup" and e["ok"]}
    assert stored == {str(f) for f in written}
    assert daemon.cli("check", "--read-data").returncode == 0


def test_a_batch_that_times_out_ends_every_job_in_it(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    # Every worker sleeps 2 s before its job; the deadline is 0.5 s: each attempt
    # of the batch is killed, and every entry's job ends, with its own event.
    daemon = make_daemon(worker_stall_s=2.0, timeout_floor_s=0.5, retry_backoff_s=0.05)
    written = _write_files(files, 6)
    result = daemon.client.add(*written, retries=0)
    assert len(result["failures"]) == len(written), result
    for f in written:
        row = daemon.client.status(f)
        assert row["job_kind"] is None and row["last_result"] == "timeout", row
    timeouts = wait_until(
        lambda: (
            {e["path"] for e in daemon.client.events() if e["kind"] == "timeout"}
            >= {str(f) for f in written}
        ),
        10,
        "a timeout event for every entry",
    )
    assert timeouts


def test_prepare_files_shares_packs_and_keeps_each_files_failure(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    written = _write_files(files, 5)
    paths = [str(f) for f in written]
    repo = Repository(LocalBackend(tmp_path / "repo"))
    missing = str(files / "gone.bin")
    results = repo.prepare_files(
        [(p, 0) for p in paths[:2]] + [(missing, 0)] + [(p, 0) for p in paths[2:]], "initial"
    )
    assert isinstance(results[2], SourceError) and "gone.bin" in str(results[2])
    prepared = [r for r in results if not isinstance(r, Exception)]
    assert len(prepared) == 5
    assert len(list(list_packs(repo.backend))) == 1  # one put for the five files
    for p in prepared:
        assert p.previous is None and not p.manifest.unchanged
        repo.commit(p.manifest)
    fresh = Repository(LocalBackend(tmp_path / "repo"))
    for f, data in written.items():
        (m,) = fresh.versions(str(f))
        assert b"".join(fresh.read_version(m)) == data
    # A second batch: the same content again is unchanged, and stores no pack.
    again = repo.prepare_files([(p, 0) for p in paths], "initial")
    assert all(not isinstance(r, Exception) and r.manifest.unchanged for r in again)
    assert len(list(list_packs(repo.backend))) == 1


class _FailingPuts(LocalBackend):
    def put(self, name: str, data: bytes) -> None:
        if name.startswith("packs/"):
            raise RepositoryError(f"cannot write {name}: No space left on device")
        super().put(name, data)


def test_a_store_failure_fails_the_whole_batch(tmp_path: Path) -> None:
    """A failed pack put may have held any file's chunks: no manifest is returned,
    and nothing stays protected from gc."""
    files = tmp_path / "files"
    files.mkdir()
    written = _write_files(files, 4)
    repo = Repository(_FailingPuts(tmp_path / "repo"))
    with pytest.raises(RepositoryError, match="No space left"):
        repo.prepare_files([(str(f), 0) for f in written], "initial")
    assert not repo._pending  # noqa: SLF001 - what gc must not delete: nothing now


class _CountingLists(LocalBackend):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.manifest_lists = 0

    def list(self, prefix: str = "") -> Iterator[str]:
        if prefix.startswith("manifests/"):
            self.manifest_lists += 1
        return super().list(prefix)


def test_paths_known_new_are_not_looked_up(tmp_path: Path) -> None:
    """On S3 each look-up of a file's newest version is a request: an add that
    found no version of a path tells the batch so."""
    files = tmp_path / "files"
    files.mkdir()
    paths = [str(f) for f in _write_files(files, 6)]
    backend = _CountingLists(tmp_path / "repo")
    repo = Repository(backend)
    results = repo.prepare_files([(p, 0) for p in paths], "initial", new=set(paths[:4]))
    assert backend.manifest_lists == 2  # the two not known to be new
    assert all(not isinstance(r, Exception) and r.previous is None for r in results)


def test_version_counts_agree_with_a_listing_per_path(tmp_path: Path) -> None:
    """An add of many paths counts their versions with one listing of every
    manifest: the counts are the per-path listings'."""
    files = tmp_path / "files"
    files.mkdir()
    written = list(_write_files(files, 3))
    repo = Repository(LocalBackend(tmp_path / "repo"))
    for i, f in enumerate(written):
        for n in range(i):
            f.write_bytes(random.Random(100 + 10 * i + n).randbytes(500))
            repo.commit(repo.prepare_file(f, "manual"))
    paths = [str(f) for f in written] + [str(files / f"never{i}") for i in range(40)]
    expected = {p: len(repo.version_names(p)) for p in paths}
    assert [expected[str(f)] for f in written] == [0, 1, 2]
    assert repo.version_counts(paths) == expected  # one listing of everything
    assert repo.version_counts(paths[:3]) == {p: expected[p] for p in paths[:3]}


class _CountingGets(LocalBackend):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.bytes_read = 0

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        data = super().get(name, offset, length)
        self.bytes_read += len(data)
        return data


def test_a_file_sharing_a_pack_restores_from_its_own_bytes(tmp_path: Path) -> None:
    """Files batched into one pack: a restore of one reads its own chunks (by byte
    range, each verified), not the whole pack; a byte flipped in its chunk is
    still an error naming the pack, never wrong bytes."""
    files = tmp_path / "files"
    files.mkdir()
    big = {files / f"big{i}": random.Random(50 + i).randbytes(300_000) for i in range(4)}
    small = files / "small"
    small.write_bytes(b"small file " * 300)
    for f, data in big.items():
        f.write_bytes(data)
    repo = Repository(LocalBackend(tmp_path / "repo"))
    paths = [str(f) for f in big] + [str(small)]
    for p in repo.prepare_files([(p, 0) for p in paths], "initial"):
        assert not isinstance(p, Exception)
        repo.commit(p.manifest)
    repo.save_index()  # as the daemon does at the latest when it stops
    (pack,) = list_packs(repo.backend)
    counting = _CountingGets(tmp_path / "repo")
    fresh = Repository(counting)
    (m,) = fresh.versions(str(small))
    fresh.chunks.load()
    counting.bytes_read = 0
    assert b"".join(fresh.read_version(m)) == small.read_bytes()
    assert counting.bytes_read < 10_000  # the pack holds over 1.2 MB
    # damage inside the small file's chunk
    (loc,) = {fresh.chunks.locations()[c] for c in m.chunks}
    raw = tmp_path / "repo" / "packs" / pack[:2] / pack
    data = bytearray(raw.read_bytes())
    data[loc.offset + loc.length // 2] ^= 0x40
    raw.write_bytes(bytes(data))
    with pytest.raises((RestoreError, CorruptObject), match=pack):
        b"".join(Repository(LocalBackend(tmp_path / "repo")).read_version(m))
