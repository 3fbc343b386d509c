"""check_repository finds missing and corrupt chunks and bad manifests."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from filetwin.backends import LocalBackend
from filetwin.errors import RestoreError
from filetwin.repo import Manifest, Problem, Repository
from filetwin.repo.check import check_repository
from filetwin.repo.packs import pack_name

from ..helpers import pack_of


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository(LocalBackend(tmp_path / "repo"))


@pytest.fixture
def stored(repo: Repository, tmp_path: Path) -> list[Manifest]:
    out = []
    for i in range(3):
        f = tmp_path / f"f{i}"
        f.write_bytes(random.Random(i).randbytes(1_500_000))
        out.append(repo.store_file(f, "manual"))
    # A second version sharing every chunk with the first.
    out.append(repo.store_file(tmp_path / "f0", "checkpoint"))
    return out


def test_healthy(repo: Repository, stored: list[Manifest]) -> None:
    calls: list[tuple[int, int]] = []
    assert check_repository(repo) == []
    assert check_repository(repo, read_data=True, progress=lambda d, t: calls.append((d, t))) == []
    assert calls[-1][0] == calls[-1][1]
    chunks = len({c for m in stored for c in m.chunks})
    assert calls[-1][1] == len(stored) + chunks  # each shared chunk read once


def test_empty_repo(repo: Repository) -> None:
    assert check_repository(repo, read_data=True) == []


def test_missing_pack(repo: Repository, stored: list[Manifest]) -> None:
    victim = stored[1].chunks[0]
    pack = pack_of(repo, victim)
    repo.backend.delete(pack)
    problems = check_repository(repo)
    # Every chunk of f1 was in that one pack (one job, one pack).
    assert {(p.kind, p.object) for p in problems} == {("missing-chunk", pack)}
    assert len(problems) == len(set(stored[1].chunks))
    assert any(victim in p.message and stored[1].path in p.message for p in problems)


def test_unindexed_packs_are_found(
    repo: Repository, stored: list[Manifest], tmp_path: Path
) -> None:
    # A crash between a pack's put and its index: the pack alone is enough.
    fresh = Repository(LocalBackend(Path(repo.backend.location)))
    assert list(fresh.backend.list("index/")) == []
    assert check_repository(fresh, read_data=True) == []
    out = b"".join(fresh.read_version(stored[2]))
    assert out == (tmp_path / "f2").read_bytes()


def test_missing_shared_chunk_names_every_version(repo: Repository, stored: list[Manifest]) -> None:
    repo.backend.delete(pack_of(repo, stored[0].chunks[0]))
    problems = check_repository(repo)
    assert {p.kind for p in problems} == {"missing-chunk"}
    assert {m.id for m in (stored[0], stored[3])} == {
        m.id for m in stored if any(m.id in p.message for p in problems)
    }


def test_corrupt_pack_found_only_with_read_data(repo: Repository, stored: list[Manifest]) -> None:
    victim = stored[2].chunks[1]
    name = pack_of(repo, victim)
    loc = repo.chunks.locations()[victim]
    path = Path(repo.backend.location) / name
    blob = bytearray(path.read_bytes())
    for i in range(loc.offset + loc.length // 2, loc.offset + loc.length // 2 + 8):
        blob[i] ^= 0xFF
    path.write_bytes(bytes(blob))
    assert check_repository(repo) == []
    problems = check_repository(repo, read_data=True)
    assert problems[0] == Problem("corrupt-pack", name, problems[0].message)
    assert {p.kind for p in problems[1:]} == {"corrupt-chunk"}
    assert {p.object for p in problems} == {name}
    assert any(victim in p.message and stored[2].path in p.message for p in problems)
    # and a restore of that version fails naming the pack instead of giving wrong bytes
    with pytest.raises(RestoreError, match=name.split("/")[-1]):
        b"".join(repo.read_version(stored[2]))
    assert pack_name(loc.pack) == name


def test_bad_manifest(repo: Repository, stored: list[Manifest]) -> None:
    name = stored[1].object_name()
    repo.backend.put(name, b'{"id": "truncated')
    other = stored[2].object_name()
    repo.backend.put(other, repo.backend.get(other).replace(b'"size":1500000', b'"size":1'))
    problems = check_repository(repo)
    assert sorted((p.kind, p.object) for p in problems) == sorted(
        [("bad-manifest", name), ("bad-manifest", other)]
    )
    assert all(p.object in p.message for p in problems)
