"""durable.write_atomic: whole or nothing, no temp files left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from filetwin.errors import RepositoryError
from filetwin.repo.durable import fsync_dir, write_atomic


def test_write_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "f"
    write_atomic(target, b"one")
    assert target.read_bytes() == b"one"
    write_atomic(target, b"two, longer")
    assert target.read_bytes() == b"two, longer"
    assert os.listdir(tmp_path) == ["f"]


def test_mode_ignores_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "g", b"x", mode=0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "g").st_mode) == 0o644


def test_missing_parent_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="cannot write") as info:
        write_atomic(tmp_path / "no" / "such" / "f", b"data")
    assert getattr(info.value, "errno", None) is not None
    assert os.listdir(tmp_path) == []


def test_failed_rename_removes_temp(tmp_path: Path) -> None:
    # Renaming a file over a non-empty directory fails after the temp is written.
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "inside").write_bytes(b"keep")
    with pytest.raises(RepositoryError):
        write_atomic(tmp_path / "d", b"data")
    assert sorted(os.listdir(tmp_path)) == ["d"]
    assert (tmp_path / "d" / "inside").read_bytes() == b"keep"


def test_fsync_dir(tmp_path: Path) -> None:
    fsync_dir(tmp_path)
    with pytest.raises(RepositoryError):
        fsync_dir(tmp_path / "missing")
