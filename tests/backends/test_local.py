"""LocalBackend: the conformance suite plus what only a directory can show."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from filetwin.backends import Backend, LocalBackend, open_backend
from filetwin.errors import UsageError

from .conformance import BackendConformance


class TestLocal(BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Backend:
        return LocalBackend(tmp_path / "repo")


def test_root_created_private(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path / "a" / "repo")
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "repo").st_mode) == 0o700
    assert b.location == str(tmp_path / "a" / "repo")
    assert isinstance(b, Backend)


def test_objects_are_private_files(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path / "repo")
    b.put("chunks/ab/abc", b"data")
    assert (tmp_path / "repo" / "chunks" / "ab" / "abc").read_bytes() == b"data"
    assert stat.S_IMODE(os.stat(tmp_path / "repo" / "chunks" / "ab" / "abc").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "repo" / "chunks").st_mode) == 0o700


def test_list_skips_leftover_temp_files(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path / "repo")
    b.put("m/one", b"1")
    # What a crash between create and rename leaves behind.
    (tmp_path / "repo" / "m" / ".tmp-deadbeef").write_bytes(b"partial")
    assert list(b.list()) == ["m/one"]


def test_list_ignores_symlinks(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path / "repo")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(b"s")
    os.symlink(tmp_path / "outside", tmp_path / "repo" / "link")
    assert list(b.list()) == []


def test_open_backend(tmp_path: Path) -> None:
    assert isinstance(open_backend(tmp_path / "p"), LocalBackend)
    assert open_backend(str(tmp_path / "s")).location == str(tmp_path / "s")
    assert open_backend(f"file://{tmp_path}/f").location == f"{tmp_path}/f"
    with pytest.raises(UsageError, match="S3 backend not available"):
        open_backend("s3://bucket/x")
    with pytest.raises(UsageError, match="ftp"):
        open_backend("ftp://host/x")
    with pytest.raises(UsageError):
        open_backend("")
