"""`filetwin check` from the command line, with no daemon running."""

from __future__ import annotations

from pathlib import Path

from filetwin.backends import LocalBackend
from filetwin.repo import Repository
from tests.helpers import pack_of, run_cli


def make_repo(tmp_path: Path) -> tuple[Path, Repository, Path]:
    state = tmp_path / "state"
    repo = Repository(LocalBackend(state / "repository"))
    f = tmp_path / "data.bin"
    f.write_bytes(bytes(range(256)) * 4000)
    repo.store_file(f, "initial")
    return state, repo, f


def test_healthy_repository_passes(tmp_path: Path) -> None:
    state, _repo, _f = make_repo(tmp_path)
    r = run_cli("check", "--read-data", "--state-dir", str(state))
    assert r.returncode == 0, r.stderr
    assert "healthy" in r.stdout


def test_missing_chunk_is_named_and_exits_1(tmp_path: Path) -> None:
    state, repo, f = make_repo(tmp_path)
    chunk = repo.latest(str(f)).chunks[0]  # type: ignore[union-attr]
    repo.backend.delete(pack_of(repo, chunk))
    r = run_cli("check", "--state-dir", str(state))
    assert r.returncode == 1
    assert chunk in r.stderr and "missing" in r.stderr


def test_corrupt_chunk_found_only_when_reading_data(tmp_path: Path) -> None:
    state, repo, f = make_repo(tmp_path)
    chunk = repo.latest(str(f)).chunks[0]  # type: ignore[union-attr]
    obj = state / "repository" / pack_of(repo, chunk)
    blob = bytearray(obj.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    obj.write_bytes(bytes(blob))
    assert run_cli("check", "--state-dir", str(state)).returncode == 0
    r = run_cli("check", "--read-data", "--json", "--state-dir", str(state))
    assert r.returncode == 1
    assert chunk in r.stdout and '"ok": false' in r.stdout
