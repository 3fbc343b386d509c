"""Repository: store/restore, dedup, history queries, retention and gc."""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from blake3 import blake3

from filetwin.backends import LocalBackend
from filetwin.errors import (
    NotFound,
    RepositoryError,
    RestoreError,
    SourceError,
    UnsafePath,
    UsageError,
)
from filetwin.repo import Manifest, Repository, entry_key

from ..helpers import CountingBackend, pack_of, stored_chunks


class Clock:
    """Deterministic clock: each call advances one second."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository(LocalBackend(tmp_path / "repo"), clock=Clock())


def restore(repo: Repository, m: Manifest) -> bytes:
    return b"".join(repo.read_version(m))


def chunk_count(repo: Repository) -> int:
    return len(stored_chunks(repo))


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def rand(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.mark.parametrize(
    "make",
    [
        lambda: b"",
        lambda: b"small file\n",
        lambda: rand(3 * 1024 * 1024, 1),
        lambda: b"".join(b"line %d of some quite compressible text\n" % i for i in range(100_000)),
    ],
    ids=["empty", "small", "random-3MiB", "text"],
)
def test_roundtrip(repo: Repository, tmp_path: Path, make: Callable[[], bytes]) -> None:
    data = make()
    p = write(tmp_path / "f", data)
    m = repo.store_file(p, "manual")
    assert m.size == len(data) and m.path == p and m.cause == "manual"
    assert restore(repo, m) == data
    assert repo.latest(p) == m
    assert repo.versions(p) == [m]
    assert entry_key(p) in m.object_name()


def test_manifest_json_roundtrip_and_metadata(repo: Repository, tmp_path: Path) -> None:
    p = write(tmp_path / "f", b"abc")
    os.chmod(p, 0o640)
    m = repo.store_file(p, "initial")
    st = os.stat(p)
    assert (m.mode, m.uid, m.gid, m.mtime_ns) == (0o640, st.st_uid, st.st_gid, st.st_mtime_ns)
    assert len(m.id) == 16 and len(m.hash) == 64
    assert Manifest.from_json(m.to_json()) == m
    with pytest.raises(ValueError, match="id"):
        Manifest.from_json({**m.to_json(), "size": 4})


def test_prepare_does_not_commit_and_reads_from_fd(repo: Repository, tmp_path: Path) -> None:
    p = write(tmp_path / "f", b"via fd")
    fd = os.open(p, os.O_RDONLY)
    try:
        os.lseek(fd, 3, os.SEEK_SET)
        m = repo.prepare_file(p, "close", fd=fd)
        assert os.lseek(fd, 0, os.SEEK_CUR) == 3  # caller's offset untouched
    finally:
        os.close(fd)
    assert repo.versions(p) == []
    assert restore(repo, m) == b"via fd"
    repo.commit(m)
    assert repo.versions(p) == [m]


def test_dedup_same_file(repo: Repository, tmp_path: Path) -> None:
    p = write(tmp_path / "f", rand(2 * 1024 * 1024, 2))
    repo.store_file(p, "manual")
    before = chunk_count(repo)
    repo.store_file(p, "manual")
    assert chunk_count(repo) == before


def test_dedup_change_in_middle(repo: Repository, tmp_path: Path) -> None:
    data = bytearray(rand(20 * 1024 * 1024, 3))
    p = write(tmp_path / "f", bytes(data))
    first = repo.store_file(p, "manual")
    before = chunk_count(repo)
    data[10 * 1024 * 1024 : 11 * 1024 * 1024] = rand(1024 * 1024, 4)
    write(tmp_path / "f", bytes(data))
    second = repo.store_file(p, "manual")
    added = chunk_count(repo) - before
    # 1 MiB is ~13 chunks of ~80 KiB, plus the chunks straddling both edges.
    assert 0 < added <= 24
    assert restore(repo, second) == bytes(data)
    assert restore(repo, first) != bytes(data)


def test_unchanged_flag(repo: Repository, tmp_path: Path) -> None:
    p = write(tmp_path / "f", b"v1")
    assert not repo.store_file(p, "initial").unchanged
    assert repo.store_file(p, "checkpoint").unchanged
    write(tmp_path / "f", b"v2")
    assert not repo.store_file(p, "close").unchanged


def test_read_errors(repo: Repository, tmp_path: Path) -> None:
    # Errors of the file being stored are SourceErrors, never RepositoryErrors:
    # only the former may lead to healing the file.
    with pytest.raises(SourceError, match="cannot read") as info:
        repo.store_file(tmp_path / "missing", "manual")
    assert not isinstance(info.value, RepositoryError)
    assert getattr(info.value, "errno", None) == errno.ENOENT
    os.symlink(tmp_path / "x", tmp_path / "link")
    with pytest.raises(UnsafePath, match="symbolic link"):
        repo.store_file(tmp_path / "link", "manual")  # never followed
    with pytest.raises(UnsafePath, match="not a regular file"):
        repo.store_file(tmp_path, "manual")
    with pytest.raises(UsageError, match="cause"):
        repo.store_file(write(tmp_path / "f", b""), "bogus")


def test_retention_and_gc(repo: Repository, tmp_path: Path) -> None:
    p = write(tmp_path / "f", rand(500_000, 10))
    other = write(tmp_path / "g", rand(300_000, 11))
    repo.store_file(other, "manual")
    contents = [rand(500_000, 20 + i) for i in range(5)]
    for c in contents:
        write(tmp_path / "f", c)
        repo.store_file(p, "manual")
    assert repo.apply_retention(p, 2) == 3
    kept = repo.versions(p)
    assert [restore(repo, m) for m in kept] == contents[-2:]
    referenced = {c for m in kept + repo.versions(other) for c in m.chunks}
    removed = repo.gc()
    assert removed > 0
    assert stored_chunks(repo) == referenced
    assert [restore(repo, m) for m in kept] == contents[-2:]
    assert restore(repo, repo.versions(other)[0]) == (tmp_path / "g").read_bytes()
    assert repo.gc() == 0
    with pytest.raises(UsageError):
        repo.apply_retention(p, 0)


def test_gc_spares_prepared_chunks(repo: Repository, tmp_path: Path) -> None:
    p = write(tmp_path / "f", rand(400_000, 30))
    m = repo.prepare_file(p, "close")
    assert repo.gc() == 0  # not yet committed, but must survive
    repo.commit(m)
    assert restore(repo, m) == (tmp_path / "f").read_bytes()


def test_purge_entries(repo: Repository, tmp_path: Path) -> None:
    a = write(tmp_path / "a", b"a")
    b = write(tmp_path / "b", b"b")
    repo.store_file(a, "manual")
    repo.store_file(a, "manual")
    repo.store_file(b, "manual")
    assert repo.entries() == sorted([a, b])
    assert repo.purge(a) == 2
    assert repo.entries() == [b]
    assert repo.latest(a) is None
    assert repo.gc() == 1


def forged(path: str, t: float) -> Manifest:
    """An empty-file manifest made without touching any file (ids vary with ``t``)."""
    return Manifest.create(
        path=path, size=0, mode=0o600, uid=0, gid=0, mtime_ns=0, hash=blake3(b"").hexdigest(),
        chunks=(), cause="manual", time=t, unchanged=False,
    )  # fmt: skip


def test_find_version(repo: Repository, tmp_path: Path) -> None:
    p = str(tmp_path / "f")
    # Forge two versions whose ids share a 4-hex prefix (birthday search, ~300 tries).
    seen: dict[str, Manifest] = {}
    t = 1_600_000_000.0
    while True:
        t += 1
        m = forged(p, t)
        if m.id[:4] in seen:
            a, b = seen[m.id[:4]], m
            break
        seen[m.id[:4]] = m
    repo.commit(a)
    repo.commit(b)
    assert repo.find_version(p, a.id) == a
    assert repo.find_version(p, b.id[:12].upper()) == b
    with pytest.raises(UsageError, match=f"ambiguous.*{a.id}"):
        repo.find_version(p, a.id[:4])
    unknown = next(i for i in seen if i not in (a.id[:4],))
    with pytest.raises(NotFound, match=f"no version {unknown} of {p}"):
        repo.find_version(p, unknown)
    with pytest.raises(UsageError, match="at least 4"):
        repo.find_version(p, "ab")
    with pytest.raises(UsageError):
        repo.find_version(p, "xyz12")
    assert restore(repo, a) == b""


def test_version_at(repo: Repository, tmp_path: Path) -> None:
    p = write(tmp_path / "f", b"1")
    m1 = repo.store_file(p, "manual")
    write(tmp_path / "f", b"2")
    m2 = repo.store_file(p, "manual")
    assert repo.version_at(p, m1.time) == m1
    assert repo.version_at(p, m1.time + 0.5) == m1
    assert repo.version_at(p, m2.time + 100) == m2
    with pytest.raises(NotFound, match="at or before .*the first is at"):
        repo.version_at(p, m1.time - 1)
    with pytest.raises(NotFound):
        repo.version_at(str(tmp_path / "never"), m2.time)


def test_a_moment_of_a_file_with_many_versions_reads_few_manifests(tmp_path: Path) -> None:
    from filetwin.repo.moments import resolve

    backend = CountingBackend(tmp_path / "repo")
    clock = Clock()
    repo = Repository(backend, clock=clock)
    p = tmp_path / "f"
    made = []
    for i in range(30):
        write(p, f"version {i}".encode())
        made.append(repo.store_file(p, "manual"))
        clock.now += 0.25  # times that are not whole seconds

    def manifests_read(at: float | None) -> tuple[Manifest, int]:
        backend.gets.clear()
        m = resolve(repo, str(p), None, at).base
        return m, len([g for g in backend.gets if g.startswith("manifests/")])

    assert manifests_read(None) == (made[-1], 1)
    for i in (0, 7, 29):
        exact, n_exact = manifests_read(made[i].time)
        between, n_between = manifests_read(made[i].time + 0.5)
        assert exact == between == made[i]
        assert n_exact <= 2 and n_between <= 2
    with pytest.raises(NotFound, match="the first is at"):
        resolve(repo, str(p), None, made[0].time - 0.001)


def test_missing_chunk_restore_error(repo: Repository, tmp_path: Path) -> None:
    p = write(tmp_path / "f", rand(200_000, 40))
    m = repo.store_file(p, "manual")
    repo.backend.delete(pack_of(repo, m.chunks[-1]))
    with pytest.raises(RestoreError, match=f"chunk {m.chunks[-1]}.*missing"):
        restore(repo, m)
