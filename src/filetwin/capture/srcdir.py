"""The interceptor's view of SOURCE: every path resolved beneath one directory fd.

The directory is opened once, before the mount (for an in-place mount it is
the directory the mount then covers, so no path through the mountpoint is
ever used: that would loop back into the interceptor). Every operation is
relative to that descriptor and follows no symlink: the kernel resolves
symlinks itself, one FUSE lookup at a time, so a path handed to the
interceptor names no symlink except, possibly, its last component, which is
then operated on itself (lstat, readlink, unlink), never followed. A
directory swapped for a symlink between the kernel's lookup and our call is
refused (ELOOP), not followed: an unprivileged user controls SOURCE.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

_SYS_OPENAT2 = 437  # the same number on every architecture (unified table)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_RESOLVE = _RESOLVE_NO_MAGICLINKS | _RESOLVE_NO_SYMLINKS | _RESOLVE_BENEATH
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_have_openat2 = True


def _walk(dirfd: int, rel: str, flags: int, mode: int) -> int:
    """openat2's contract without openat2: one no-follow component at a time."""
    parts = [p for p in rel.split("/") if p]
    if any(p == ".." for p in parts):
        raise OSError(errno.EXDEV, "path leaves the source directory", rel)
    fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        for part in parts[:-1]:
            nfd = os.open(
                part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
            )
            os.close(fd)
            fd = nfd
        return os.open(parts[-1] if parts else ".", flags | os.O_NOFOLLOW, mode, dir_fd=fd)
    finally:
        os.close(fd)


def openat2(dirfd: int, rel: str, flags: int, mode: int = 0) -> int:
    """Open ``rel`` beneath ``dirfd``; no symlink, no ``..`` out, no magic link."""
    global _have_openat2
    rel = rel or "."
    flags |= os.O_CLOEXEC
    if _have_openat2:
        how = _OpenHow(flags, mode & 0o7777 if flags & (os.O_CREAT | os.O_TMPFILE) else 0, _RESOLVE)
        fd = _libc.syscall(
            _SYS_OPENAT2, dirfd, os.fsencode(rel), ctypes.byref(how), ctypes.sizeof(how)
        )
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err != errno.ENOSYS:
            raise OSError(err, os.strerror(err), rel)
        _have_openat2 = False
    return _walk(dirfd, rel, flags, mode)


class SourceDir:
    """SOURCE, reached only through ``fd`` (opened by :meth:`open` before any mount)."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        #: for messages only: never used to reach a file
        self.path = path

    @classmethod
    def open(cls, path: str) -> SourceDir:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return cls(fd, os.path.realpath(path))

    def close(self) -> None:
        os.close(self.fd)

    @staticmethod
    def rel(path: str) -> str:
        """FUSE's ``/a/b`` as ``a/b`` (``.`` for the root)."""
        return path.strip("/") or "."

    def open_file(self, path: str, flags: int, mode: int = 0) -> int:
        return openat2(self.fd, self.rel(path), flags, mode)

    @contextmanager
    def parent(self, path: str) -> Iterator[tuple[int, str]]:
        """(directory fd, last component) for ``path``; the root's own parent is itself."""
        head, name = os.path.split(self.rel(path))
        if not head:
            yield self.fd, name
            return
        fd = openat2(self.fd, head, os.O_PATH | os.O_DIRECTORY)
        try:
            yield fd, name
        finally:
            os.close(fd)

    def lstat(self, path: str) -> os.stat_result:
        with self.parent(path) as (d, name):
            return os.stat(name, dir_fd=d, follow_symlinks=False)

    def listdir(self, path: str) -> list[str]:
        # A descriptor of its own: listdir on a shared one would share its offset
        # with another thread listing the same directory.
        fd = openat2(self.fd, self.rel(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)
