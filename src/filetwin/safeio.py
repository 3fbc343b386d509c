"""Writing a file so that nothing planted in its way is followed.

Restore may run as root on a path an attacker can reach: every directory of
the path is opened with O_NOFOLLOW from ``/`` down, the new content goes to a
temp file created O_EXCL inside that directory descriptor, and the temp file
is renamed over the name. A symlink at the name itself is replaced, never
written through.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from .errors import RepositoryError, UnsafePath

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir_nofollow(directory: str) -> int:
    """Open absolute ``directory`` without following any symlink or ``..`` in it."""
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
                nfd = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    try:
                        is_link = stat.S_ISLNK(
                            os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode
                        )
                    except OSError:
                        is_link = False
                    if is_link:
                        raise UnsafePath(
                            f"{walked} is a symbolic link; refusing to follow it"
                        ) from e
                    raise UnsafePath(f"{walked} is not a directory") from e
                if e.errno == errno.ENOENT:
                    raise UnsafePath(f"directory {walked} does not exist") from e
                raise
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


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
    """
    directory, name = os.path.split(path)
    dfd = open_dir_nofollow(directory)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dfd)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ELOOP):
            return None
        raise
    finally:
        os.close(dfd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
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


def replace_file(path: str, chunks: Iterable[bytes], meta: FileMeta) -> int:
    """Durably replace ``path`` with the bytes of ``chunks``; return the size written."""
    return replace_file_with(path, lambda fd: write_all(fd, chunks), meta)


def replace_file_with(path: str, fill: Callable[[int], int], meta: FileMeta) -> int:
    """Durably replace ``path`` with what ``fill(fd)`` writes into a temp file.

    temp file (O_EXCL|O_NOFOLLOW in the directory fd) → fill → owner, mode,
    mtime → fsync → rename over the name → fsync the directory. A failed
    fsync is raised, never retried. The temp file is removed on any error.
    ``fill`` returns the file's size.
    """
    directory, name = os.path.split(path)
    if not name or name in (".", ".."):
        raise UnsafePath(f"{path} does not name a file")
    dfd = open_dir_nofollow(directory)
    tmp = f".{name}.filetwin-{secrets.token_hex(4)}"
    try:
        try:
            existing = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise UnsafePath(f"{path} is a directory; refusing to replace it")
        fd = os.open(
            tmp,
            os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=dfd,
        )
        try:
            size = fill(fd)
            with contextlib.suppress(PermissionError):
                os.fchown(fd, meta.uid, meta.gid)
            os.fchmod(fd, meta.mode & 0o7777)
            os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        os.fsync(dfd)
        return size
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        if isinstance(e, OSError) and not isinstance(e, UnsafePath):
            raise RepositoryError(f"cannot write {path}: {e.strerror}") from e
        raise
    finally:
        os.close(dfd)
