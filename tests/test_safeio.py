"""safeio: open directories and replace files without following planted links."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from filetwin.errors import RepositoryError, SourceError, UnsafePath
from filetwin.safeio import FileMeta, open_dir_nofollow, open_existing_nofollow, replace_file

META = FileMeta(mode=0o640, uid=1234, gid=5678, mtime_ns=1_500_000_000_987_654_321)


def entries(d: Path) -> list[str]:
    return sorted(os.listdir(d))


def test_open_dir_nofollow_opens_the_directory(tmp_path: Path) -> None:
    d = tmp_path / "a" / "b"
    d.mkdir(parents=True)
    fd = open_dir_nofollow(str(d))
    try:
        assert os.fstat(fd).st_ino == d.stat().st_ino
    finally:
        os.close(fd)
    fd = open_dir_nofollow(str(tmp_path) + "/./a//b/")
    try:
        assert os.fstat(fd).st_ino == d.stat().st_ino
    finally:
        os.close(fd)
    fd = open_dir_nofollow("/")
    try:
        assert os.fstat(fd).st_ino == os.stat("/").st_ino
    finally:
        os.close(fd)


@pytest.mark.parametrize("rel", ["a/../a/b", "a/b/..", "../x"])
def test_dotdot_is_unsafe(tmp_path: Path, rel: str) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    with pytest.raises(UnsafePath, match=r"contains '\.\.'"):
        open_dir_nofollow(f"{tmp_path}/{rel}")
    with pytest.raises(UnsafePath, match=r"contains '\.\.'"):
        replace_file(f"{tmp_path}/{rel}/f.txt", [b"x"], META)
    with pytest.raises(UnsafePath, match=r"contains '\.\.'"):
        open_existing_nofollow(f"{tmp_path}/{rel}/f.txt")
    assert not list(tmp_path.rglob("f.txt"))


def test_relative_is_unsafe() -> None:
    with pytest.raises(UnsafePath, match="not an absolute path"):
        open_dir_nofollow("relative/dir")
    with pytest.raises(UnsafePath, match="not an absolute path"):
        replace_file("relative.txt", [b"x"], META)


def test_symlinked_component_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "inner").mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(UnsafePath, match=f"{tmp_path}/link is a symbolic link"):
        open_dir_nofollow(str(tmp_path / "link" / "inner"))
    with pytest.raises(UnsafePath, match=f"{tmp_path}/link is a symbolic link"):
        replace_file(str(tmp_path / "link" / "inner" / "f.txt"), [b"x"], META)
    assert entries(real / "inner") == []
    # A symlink to a directory at the last component is refused as well.
    with pytest.raises(UnsafePath, match="is a symbolic link"):
        open_dir_nofollow(str(tmp_path / "link"))


def test_missing_and_non_directory_components(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UnsafePath, match=f"{tmp_path}/file is not a directory"):
        open_dir_nofollow(str(tmp_path / "file" / "sub"))
    with pytest.raises(UnsafePath, match=f"directory {tmp_path}/nope does not exist"):
        replace_file(str(tmp_path / "nope" / "f.txt"), [b"x"], META)
    assert not (tmp_path / "nope").exists()


def test_replace_file_writes_content_and_metadata(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    chunks = [b"abc", b"", os.urandom(70_000), b"tail"]
    size = replace_file(str(target), iter(chunks), META)
    assert size == sum(map(len, chunks))
    assert target.read_bytes() == b"".join(chunks)
    st = os.lstat(target)
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert st.st_mtime_ns == META.mtime_ns
    assert entries(tmp_path) == ["out.bin"]


def test_replace_file_keeps_special_bits_and_replaces_existing(tmp_path: Path) -> None:
    target = tmp_path / "old.txt"
    target.write_text("old content that is longer than the new one\n")
    old_ino = target.stat().st_ino
    meta = FileMeta(mode=0o104755, uid=0, gid=0, mtime_ns=1_000_000_000)
    assert replace_file(str(target), [b"new\n"], meta) == 4
    assert target.read_bytes() == b"new\n"
    st = target.stat()
    assert stat.S_IMODE(st.st_mode) == 0o4755
    assert st.st_ino != old_ino  # a new inode renamed into place, not a rewrite
    assert entries(tmp_path) == ["old.txt"]


def test_replace_file_replaces_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"victim\n")
    os.chmod(victim, 0o644)
    before = victim.stat()
    d = tmp_path / "d"
    d.mkdir()
    (d / "f.txt").symlink_to(victim)
    replace_file(str(d / "f.txt"), [b"restored\n"], META)
    assert not (d / "f.txt").is_symlink()
    assert (d / "f.txt").read_bytes() == b"restored\n"
    assert victim.read_bytes() == b"victim\n"
    after = victim.stat()
    assert (after.st_mode, after.st_uid, after.st_gid, after.st_mtime_ns) == (
        before.st_mode,
        before.st_uid,
        before.st_gid,
        before.st_mtime_ns,
    )


def test_replace_file_refuses_directory_and_bad_names(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "keep").write_text("x")
    with pytest.raises(UnsafePath, match="is a directory"):
        replace_file(str(tmp_path / "dir"), [b"x"], META)
    assert entries(tmp_path / "dir") == ["keep"]
    with pytest.raises(UnsafePath, match="does not name a file"):
        replace_file(str(tmp_path) + "/", [b"x"], META)
    with pytest.raises(UnsafePath, match="does not name a file"):
        replace_file(f"{tmp_path}/.", [b"x"], META)
    assert entries(tmp_path) == ["dir"]


def test_replace_file_failure_leaves_target_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_bytes(b"original\n")

    def failing() -> Iterator[bytes]:
        yield b"partial"
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        replace_file(str(target), failing(), META)
    assert target.read_bytes() == b"original\n"
    assert entries(tmp_path) == ["f.txt"]


def test_replace_file_os_error_is_a_source_error(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_bytes(b"original\n")

    def failing() -> Iterator[bytes]:
        yield b"partial"
        raise OSError(5, "Input/output error")

    with pytest.raises(SourceError, match=f"cannot write {target}: Input/output error") as info:
        replace_file(str(target), failing(), META)
    assert info.value.errno == 5
    assert target.read_bytes() == b"original\n"
    assert entries(tmp_path) == ["f.txt"]

    def store_fails() -> Iterator[bytes]:
        yield b"partial"
        raise RepositoryError("chunk missing")

    with pytest.raises(RepositoryError, match="chunk missing"):
        replace_file(str(target), store_fails(), META)
    assert entries(tmp_path) == ["f.txt"]


def test_open_existing_nofollow(tmp_path: Path) -> None:
    regular = tmp_path / "regular"
    regular.write_bytes(b"data")
    fd = open_existing_nofollow(str(regular))
    assert fd is not None
    try:
        assert os.read(fd, 10) == b"data"
    finally:
        os.close(fd)
    (tmp_path / "link").symlink_to(regular)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    for name in ("link", "fifo", "dir", "missing"):
        assert open_existing_nofollow(str(tmp_path / name)) is None, name
    (tmp_path / "ldir").symlink_to(tmp_path / "dir")
    with pytest.raises(UnsafePath, match="ldir is a symbolic link"):
        open_existing_nofollow(str(tmp_path / "ldir" / "x"))


def test_open_protected(tmp_path: Path) -> None:
    from filetwin.safeio import open_protected

    (tmp_path / "d").mkdir()
    regular = tmp_path / "d" / "f.txt"
    regular.write_bytes(b"content")
    fd = open_protected(str(regular))
    try:
        assert os.read(fd, 100) == b"content"
        assert os.get_blocking(fd)
    finally:
        os.close(fd)
    (tmp_path / "link").symlink_to(regular)
    (tmp_path / "ldir").symlink_to(tmp_path / "d")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UnsafePath, match="symbolic link"):
        open_protected(str(tmp_path / "link"))
    with pytest.raises(UnsafePath, match="symbolic link"):
        open_protected(str(tmp_path / "ldir" / "f.txt"))
    with pytest.raises(UnsafePath, match="not a regular file"):
        open_protected(str(tmp_path / "fifo"))
    with pytest.raises(UnsafePath, match="not a regular file"):
        open_protected(str(tmp_path / "d"))
    with pytest.raises(FileNotFoundError):
        open_protected(str(tmp_path / "d" / "absent"))
    with pytest.raises(FileNotFoundError):
        open_protected(str(tmp_path / "nodir" / "absent"))


def test_write_sparse_and_punch_keep_holes(tmp_path: Path) -> None:
    from filetwin.safeio import punch_zero_blocks, write_sparse

    zeros = bytes(8 << 20)
    chunks = [zeros, b"\0" * 100 + b"data" + b"\0" * 5000, zeros, b"tail", zeros]
    want = b"".join(chunks)
    out = tmp_path / "sparse"
    fd = os.open(out, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert write_sparse(fd, chunks) == len(want)
    finally:
        os.close(fd)
    assert out.read_bytes() == want
    assert os.stat(out).st_blocks * 512 <= 64 << 10
    dense = tmp_path / "dense"
    dense.write_bytes(want)
    assert os.stat(dense).st_blocks * 512 >= len(want)
    fd = os.open(dense, os.O_RDWR)
    try:
        punch_zero_blocks(fd, len(want))
    finally:
        os.close(fd)
    assert dense.read_bytes() == want
    assert os.stat(dense).st_blocks * 512 <= 64 << 10


def test_keep_links_writes_into_the_inode_only_after_fill_succeeds(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_bytes(b"old content")
    link = tmp_path / "link.txt"
    os.link(target, link)
    ino = target.stat().st_ino

    def failing() -> Iterator[bytes]:
        yield b"partial"
        raise RepositoryError("chunk missing")

    with pytest.raises(RepositoryError):
        replace_file(str(target), failing(), META, keep_links=True)
    assert target.read_bytes() == link.read_bytes() == b"old content"
    assert replace_file(str(target), [b"new"], META, keep_links=True) == 3
    assert target.read_bytes() == link.read_bytes() == b"new"
    st = target.stat()
    assert (st.st_ino, st.st_nlink, stat.S_IMODE(st.st_mode)) == (ino, 2, 0o640)
    assert entries(tmp_path) == ["f.txt", "link.txt"]
    # Without keep_links (another destination) the link is replaced, not written through.
    replace_file(str(link), [b"other"], META)
    assert target.read_bytes() == b"new" and link.read_bytes() == b"other"
