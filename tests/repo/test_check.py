"""check_repository finds missing and corrupt chunks and bad manifests."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from filetwin.backends import LocalBackend
from filetwin.repo import Manifest, Problem, Repository
from filetwin.repo.check import check_repository
from filetwin.repo.chunks import chunk_name


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


def test_missing_chunk(repo: Repository, stored: list[Manifest]) -> None:
    victim = stored[1].chunks[0]
    repo.backend.delete(chunk_name(victim))
    problems = check_repository(repo)
    assert [p.kind for p in problems] == ["missing-chunk"]
    assert problems[0].object == chunk_name(victim)
    assert victim in problems[0].message and stored[1].path in problems[0].message


def test_missing_shared_chunk_names_every_version(repo: Repository, stored: list[Manifest]) -> None:
    repo.backend.delete(chunk_name(stored[0].chunks[0]))
    problems = check_repository(repo)
    assert {p.kind for p in problems} == {"missing-chunk"}
    assert {m.id for m in (stored[0], stored[3])} == {
        m.id for m in stored if any(m.id in p.message for p in problems)
    }


def test_corrupt_chunk_found_only_with_read_data(repo: Repository, stored: list[Manifest]) -> None:
    victim = stored[2].chunks[1]
    path = Path(repo.backend.location) / chunk_name(victim)
    blob = bytearray(path.read_bytes())
    for i in range(len(blob) // 2, len(blob) // 2 + 8):
        blob[i] ^= 0xFF
    path.write_bytes(bytes(blob))
    assert check_repository(repo) == []
    problems = check_repository(repo, read_data=True)
    assert problems == [Problem("corrupt-chunk", chunk_name(victim), problems[0].message)]
    assert victim in problems[0].message and stored[2].path in problems[0].message


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
