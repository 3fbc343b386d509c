"""Writing a file so that nothing planted in its way is followed.

Restore may run as root on a path an attacker can reach: every directory of
the path is opened with O_NOFOLLOW from ``/`` down, the new content goes to a
temp file created O_EXCL inside that directory descriptor, and the temp file
is renamed over the name. A symlink at the name itself is replaced, never
written through; a directory, FIFO, socket or device at the name is refused.
The entry's own file, when hard-linked, is written in place (its inode kept)
so that every link sees the restored content. All-zero blocks are left as
holes, so a sparse file restores sparse.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from .errors import SourceError, UnsafePath

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir_nofollow(directory: str, *, create: bool = False) -> int:
    """Open absolute ``directory`` without following any symlink or ``..`` in it.

    ``create``: make each missing directory on the way (mode 0777 less the
    umask, as ``mkdir -p``), still refusing a symlink met on the way."""
    parts = PurePosixPath(directory).parts
    if not parts or parts[0] != "/":
        raise UnsafePath(f"{directory} is not an absolute path")
    if ".." in parts:
        raise UnsafePath(f"{directory} contains '..'; refusing to follow it")
    fd = os.open("/", DIR_FLAGS)
    walked = "/"
    try:
        for part in parts[1:]:
            if part in ("", "."):
                continue
            walked = os.path.join(walked, part)
            try:
                nfd = _open_child(fd, part, walked)
            except FileNotFoundError as e:
                if not create:
                    # open_protected tells a missing directory by this cause.
                    raise UnsafePath(f"directory {walked} does not exist") from e
                # Made only when missing: an existing one costs a single open.
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
                nfd = _open_child(fd, part, walked)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_child(fd: int, part: str, walked: str) -> int:
    """Open directory ``part`` of ``fd`` no-follow (``walked``: its path, for the
    message). UnsafePath for a symlink or a non-directory; FileNotFoundError
    when it does not exist; other OSErrors as they come."""
    try:
        return os.open(part, DIR_FLAGS, dir_fd=fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            try:
                is_link = stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode)
            except OSError:
                is_link = False
            if is_link:
                raise UnsafePath(f"{walked} is a symbolic link; refusing to follow it") from e
            raise UnsafePath(f"{walked} is not a directory") from e
        raise


def open_protected(path: str) -> int:
    """Open the protected file ``path`` for reading without following any symlink.

    Every directory of ``path`` is walked from ``/`` with O_NOFOLLOW directory
    fds and the name is opened O_NOFOLLOW relative to its parent's fd, so a
    symlink planted at the name or in any parent is never read through, also
    as root. Returns a read-only, close-on-exec fd of a regular file (blocking
    mode); the caller closes it.

    Raises UnsafePath when a symlink (or ``..``) is at the name or in a parent,
    or when the name is not a regular file (a FIFO, device, socket, directory);
    FileNotFoundError when the file or one of its directories does not exist.
    Other OSErrors (EACCES, EIO) are raised as they are.
    """
    directory, name = os.path.split(path)
    if not name or name in (".", ".."):
        raise UnsafePath(f"{path} does not name a file")
    try:
        dfd = open_dir_nofollow(directory)
    except UnsafePath as e:
        if isinstance(e.__cause__, FileNotFoundError):
            raise FileNotFoundError(errno.ENOENT, f"directory of {path} does not exist") from e
        raise
    try:
        try:
            # O_NONBLOCK: opening a FIFO must not hang waiting for a writer.
            fd = os.open(
                name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dfd
            )
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise UnsafePath(f"{path} is a symbolic link; refusing to follow it") from e
            raise
    finally:
        os.close(dfd)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafePath(f"{path} is not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


@dataclass(frozen=True)
class FileMeta:
    mode: int
    uid: int
    gid: int
    mtime_ns: int


def open_existing_nofollow(path: str) -> int | None:
    """Open ``path`` read-only if it is a regular file reached without symlinks.

    Returns None when nothing (or a symlink, or a non-regular file) is there.
    UnsafePath when a parent is a symlink.
    """
    directory, name = os.path.split(path)
    dfd = open_dir_nofollow(directory)
    try:
        return open_regular_at(dfd, name)
    finally:
        os.close(dfd)


def open_regular_at(dfd: int, name: str) -> int | None:
    """Open ``name`` in the directory ``dfd`` read-only, O_NOFOLLOW, if it is a
    regular file (blocking fd); None when nothing, a symlink or another kind
    of file is there."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dfd)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ELOOP):
            return None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    return fd


def write_all(fd: int, chunks: Iterable[bytes]) -> int:
    """Write every chunk to ``fd`` at its current offset; return the bytes written."""
    size = 0
    for data in chunks:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
            size += n
    return size


#: the unit in which all-zero runs are left as holes (a file-system block)
HOLE_BLOCK = 4096


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def write_sparse(fd: int, chunks: Iterable[bytes]) -> int:
    """Write the chunks from offset 0 into the empty file ``fd``, leaving holes.

    Aligned 4 KiB blocks that are all zeros are skipped (the file must be
    empty: a hole reads as zeros), and the file is truncated to the total
    size at the end, so a sparse version restores sparse. Returns the size.
    """
    offset = 0
    for raw in chunks:
        data = bytes(raw) if not isinstance(raw, bytes) else raw
        n = len(data)
        # A non-zero first or last byte settles it without counting (random data:
        # the count of every 4 KiB block was a quarter of a restore's time).
        if n and data[0] == 0 and data[-1] == 0 and data.count(0) == n:
            offset += n
            continue
        view = memoryview(data)
        run = -1  # start (in data) of the current run of non-zero blocks
        pos = 0
        while pos < n:
            end = min(n, pos + HOLE_BLOCK - (offset + pos) % HOLE_BLOCK)
            if data[pos] == 0 and data[end - 1] == 0 and data.count(0, pos, end) == end - pos:
                if run >= 0:
                    _pwrite_all(fd, view[run:pos], offset + run)
                    run = -1
            elif run < 0:
                run = pos
            pos = end
        if run >= 0:
            _pwrite_all(fd, view[run:n], offset + run)
        offset += n
    os.ftruncate(fd, offset)
    return offset


def _data_segments(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(offset, length) of the parts of ``fd`` that hold data (holes skipped)."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole is left
                return
            if e.errno == errno.EINVAL:  # no SEEK_DATA here: all of it is data
                yield offset, size - offset
                return
            raise
        end = min(size, os.lseek(fd, start, os.SEEK_HOLE))
        yield start, end - start
        offset = end


def copy_sparse(src: int, dst: int, size: int) -> None:
    """Copy ``size`` bytes of ``src`` into the empty ``dst``, keeping ``src``'s holes."""
    for offset, length in _data_segments(src, size):
        done = 0
        while done < length:
            data = os.pread(src, min(8 << 20, length - done), offset + done)
            if not data:
                raise OSError(errno.EIO, "source file shrank while being copied")
            _pwrite_all(dst, memoryview(data), offset + done)
            done += len(data)
    os.ftruncate(dst, size)


def _refuse_special(path: str, st: os.stat_result | None) -> None:
    """Only a regular file, a symlink (replaced, never followed) or nothing may be
    at a name restore or heal writes: a directory, FIFO, socket or device is refused."""
    if st is None or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
        return
    what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
    raise UnsafePath(f"{path} is {what}; refusing to replace it")


def replace_file(
    path: str, chunks: Iterable[bytes], meta: FileMeta, *, keep_links: bool = False
) -> int:
    """Durably replace ``path`` with the bytes of ``chunks`` (all-zero blocks left
    as holes); return the size written. ``keep_links`` as in replace_file_with."""
    return replace_file_with(path, lambda fd: write_sparse(fd, chunks), meta, keep_links=keep_links)


def replace_file_with(
    path: str, fill: Callable[[int], int], meta: FileMeta, *, keep_links: bool = False
) -> int:
    """Durably replace ``path`` with what ``fill(fd)`` writes into a temp file.

    temp file (O_EXCL|O_NOFOLLOW in the directory fd) → fill → owner, mode,
    mtime → fsync → rename over the name → fsync the directory. A failed
    fsync is raised, never retried. The temp file is removed on any error.
    ``fill`` gets an empty file and returns the file's size. An OSError is
    raised as SourceError (with its errno): the written file's own failure;
    FiletwinErrors from ``fill`` (RepositoryError, RestoreError) pass as they are.

    What may be at the name: nothing, a regular file, or a symlink (the link
    itself is replaced, never written through). A directory, FIFO, socket or
    device is refused with UnsafePath, as is a symlink in any parent.

    ``keep_links``: when the name holds a regular file with more than one
    hard link, the new content is written into that inode (opened O_NOFOLLOW
    relative to the directory fd) instead of renamed over the name, so every
    link sees it: the content is first built and checked in an unnamed temp
    file, then copied in (ftruncate, write, fsync), holes kept. Meant for the
    entry's own file (in-place restore, heal), never for another destination.
    """
    directory, name = os.path.split(path)
    if not name or name in (".", ".."):
        raise UnsafePath(f"{path} does not name a file")
    dfd = open_dir_nofollow(directory)
    try:
        return replace_in_dir(dfd, name, path, fill, meta, keep_links=keep_links)
    finally:
        os.close(dfd)


def replace_in_dir(
    dfd: int,
    name: str,
    path: str,
    fill: Callable[[int], int],
    meta: FileMeta,
    *,
    keep_links: bool = False,
    keep_inode: bool = False,
) -> int:
    """replace_file_with on ``name`` in the directory already open as ``dfd``
    (``path`` only names it in messages): a caller that reads the file, then
    replaces it, walks the path once and works in one directory throughout.

    ``keep_links``: a file with several links is written into its inode, so
    every link sees the new content. ``keep_inode``: any existing regular file
    is (a program holding it open keeps writing into the live file)."""
    if not name or "/" in name or name in (".", ".."):
        raise UnsafePath(f"{path} does not name a file")
    tmp = f".{name}.filetwin-{secrets.token_hex(4)}"
    renamed = False
    try:
        try:
            existing: os.stat_result | None = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        _refuse_special(path, existing)
        if (
            existing is not None
            and stat.S_ISREG(existing.st_mode)
            and (keep_inode or (keep_links and existing.st_nlink > 1))
        ):
            return _write_into_inode(dfd, name, path, existing, fill, meta)
        fd = os.open(
            tmp,
            os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=dfd,
        )
        try:
            size = fill(fd)
            _finish(fd, meta)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        renamed = True
        os.fsync(dfd)
        return size
    except BaseException as e:
        if not renamed:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
        if isinstance(e, OSError) and not isinstance(e, UnsafePath):
            # Writing the file restore or heal replaces failed (its disk, not
            # the repository: errors of the store arrive as RepositoryError).
            raise SourceError(f"cannot write {path}: {e.strerror}", e.errno) from e
        raise


def _finish(fd: int, meta: FileMeta) -> None:
    """Owner, mode and mtime of ``meta`` on ``fd``, then fsync."""
    with contextlib.suppress(PermissionError):
        os.fchown(fd, meta.uid, meta.gid)
    os.fchmod(fd, meta.mode & 0o7777)
    os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
    os.fsync(fd)


def _unnamed_temp(dfd: int) -> int:
    """An unnamed read-write file in the directory ``dfd`` (O_TMPFILE, else a
    temp created O_EXCL|O_NOFOLLOW and unlinked at once)."""
    try:
        return os.open(".", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600, dir_fd=dfd)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
    tmp = f".filetwin-{secrets.token_hex(6)}"
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o600, dir_fd=dfd)
    os.unlink(tmp, dir_fd=dfd)
    return fd


def _write_into_inode(
    dfd: int,
    name: str,
    path: str,
    expected: os.stat_result,
    fill: Callable[[int], int],
    meta: FileMeta,
) -> int:
    """Build the content in an unnamed temp, then write it into the inode at
    ``name`` (which must still be ``expected``): every hard link sees it."""
    tmp = _unnamed_temp(dfd)
    try:
        size = fill(tmp)  # raises (a bad hash) before the live inode is touched
        fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dfd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (
                expected.st_dev,
                expected.st_ino,
            ):
                raise UnsafePath(f"{path} was replaced while being restored; try again")
            os.set_blocking(fd, True)
            os.ftruncate(fd, 0)  # drop the old blocks: holes stay holes
            copy_sparse(tmp, fd, size)
            _finish(fd, meta)
        finally:
            os.close(fd)
        return size
    finally:
        os.close(tmp)


def punch_zero_blocks(fd: int, size: int) -> None:
    """Turn aligned all-zero 4 KiB runs of ``fd`` into holes (best effort: a file
    system without hole punching keeps them as they are)."""
    run_start = -1
    offset = 0
    big = 1 << 20
    while offset < size:
        # Holes are holes already: jump over them (a sparse file of any size
        # costs the time of its data, not of its length).
        try:
            data_at = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as e:
            data_at = size if e.errno == errno.ENXIO else offset
        if data_at > offset:
            if run_start >= 0:
                if not _punch(fd, run_start, offset - run_start):
                    return
                run_start = -1
            offset = data_at
            continue
        data = os.pread(fd, min(big, size - offset), offset)
        if not data:
            break
        for pos in range(0, len(data), HOLE_BLOCK):
            blk_end = min(len(data), pos + HOLE_BLOCK)
            zero = blk_end - pos == HOLE_BLOCK and data.count(0, pos, blk_end) == HOLE_BLOCK
            if zero and run_start < 0:
                run_start = offset + pos
            elif not zero and run_start >= 0:
                if not _punch(fd, run_start, offset + pos - run_start):
                    return
                run_start = -1
        offset += len(data)
    if run_start >= 0:
        _punch(fd, run_start, offset - run_start)


def _punch(fd: int, offset: int, length: int) -> bool:
    """fallocate(PUNCH_HOLE|KEEP_SIZE); False when the file system cannot."""
    libc = _libc()
    if libc is None:
        return False
    res = libc.fallocate(fd, 0x02 | 0x01, ctypes.c_int64(offset), ctypes.c_int64(length))
    if res != 0:
        err = ctypes.get_errno()
        if err in (errno.EOPNOTSUPP, errno.ENOSYS):
            return False
        raise OSError(err, os.strerror(err))
    return True


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
