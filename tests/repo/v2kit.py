"""Shared pieces of the repository v2 tests: repositories encrypted or not, their
versions with the hashes they must restore to, and snapshots of a directory tree.

Encrypted repositories here use ``crypto.CHEAP_KDF`` (a key file that says so
is read back with those parameters), so unlocking costs nothing.
"""

from __future__ import annotations

import hashlib
import os
import random
import tarfile
from pathlib import Path

import blake3

from filetwin.backends import LocalBackend
from filetwin.repo import Manifest, Repository
from filetwin.repo import format as fmt
from filetwin.repo.crypto import CHEAP_KDF

PASSPHRASE = "correct horse battery staple"
#: the repository made by the code before packs (tests/data/README.md)
V1_TARBALL = Path(__file__).resolve().parent.parent / "data" / "v1-repository.tar.gz"
#: a small pack target, so that a few hundred KB make several packs
SMALL_PACKS = 96 * 1024


def make_repository(
    location: Path, mode: str, *, key_file: Path | None = None, pack_size: int = SMALL_PACKS
) -> Repository:
    """A new repository at ``location`` of encryption ``mode`` (``none``,
    ``repokey`` with PASSPHRASE, or ``keyfile`` written to ``key_file``)."""
    backend = LocalBackend(location)
    _info, keys = fmt.create(
        backend,
        mode,
        passphrase=lambda: PASSPHRASE,
        key_file_for=(lambda _rid: key_file) if key_file is not None else None,
        kdf=CHEAP_KDF,
    )
    return Repository(backend, keys=keys, pack_size=pack_size)


def reopen(repo: Repository) -> Repository:
    """The same repository as a fresh process would see it (new view, same keys)."""
    return Repository(LocalBackend(Path(repo.backend.location)), keys=repo.keys)


def content(seed: int, size: int) -> bytes:
    """Incompressible bytes, different for every seed."""
    return random.Random(seed).randbytes(size)


def store(repo: Repository, path: Path, data: bytes, cause: str = "manual") -> Manifest:
    """Write ``data`` to ``path`` and store it as a version."""
    path.write_bytes(data)
    return repo.store_file(path, cause)


def all_versions(repo: Repository) -> dict[str, Manifest]:
    """Every version in the repository, by id."""
    return {m.id: m for path in repo.entries() for m in repo.versions(path)}


def restored(repo: Repository, m: Manifest) -> bytes:
    """The content of version ``m``, rebuilt and checked by read_version."""
    return b"".join(repo.read_version(m))


def assert_all_restore(repo: Repository, versions: dict[str, Manifest]) -> None:
    """Every version of ``versions`` is still listed and restores bit for bit."""
    now = all_versions(repo)
    assert set(versions) <= set(now), f"versions lost: {sorted(set(versions) - set(now))}"
    for vid, m in versions.items():
        data = restored(repo, now[vid])
        assert blake3.blake3(data).hexdigest() == m.hash and len(data) == m.size, vid


def tree(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root``: relative path -> (mode, sha256 of its content)."""
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "-"
            out[str(p.relative_to(root))] = (st.st_mode, digest)
    return out


def objects(location: Path, prefix: str) -> list[Path]:
    """The object files of a local repository under ``prefix`` (e.g. ``packs``)."""
    return sorted(p for p in (location / prefix).rglob("*") if p.is_file())


def flip(path: Path, at: int | None = None) -> None:
    """Flip one byte of a file (its middle by default)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0x40
    path.write_bytes(bytes(data))


def unpack_v1(into: Path) -> Path:
    """The v1 repository unpacked under ``into``; its path (``into/repository``)."""
    with tarfile.open(V1_TARBALL) as tar:
        # The "data" filter (PEP 706) where this Python has it; the tarball is ours.
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:  # pragma: no cover - Pythons before 3.11.4
            tar.extractall(into)  # noqa: S202
    return into / "repository"
