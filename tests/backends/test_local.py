"""LocalBackend: the conformance suite plus what only a directory can show."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from filetwin.backends import Backend, LocalBackend, open_backend
from filetwin.errors import ObjectNotFound, UsageError

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
    with pytest.raises(UsageError, match="S3 endpoint or region applies to s3:// locations only"):
        open_backend(tmp_path / "q", endpoint_url="http://127.0.0.1:1")
    with pytest.raises(UsageError, match="invalid bucket name"):
        open_backend("s3://B/x")
    with pytest.raises(UsageError, match="ftp"):
        open_backend("ftp://host/x")
    with pytest.raises(UsageError):
        open_backend("")


def test_get_does_not_follow_symlinks(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path / "repo")
    (tmp_path / "secret").write_bytes(b"not an object")
    os.symlink(tmp_path / "secret", tmp_path / "repo" / "link")
    with pytest.raises(ObjectNotFound):
        b.get("link")
    with pytest.raises(ObjectNotFound):
        b.get("link", 0, 3)
    assert not b.exists("link")


def test_get_of_a_directory_is_not_found(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path / "repo")
    b.put("d/x", b"1")
    with pytest.raises(ObjectNotFound):
        b.get("d", 0, 1)
