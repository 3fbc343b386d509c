"""The interceptor: ``filetwin mount SOURCE MOUNTPOINT``, a FUSE passthrough.

It serves SOURCE at MOUNTPOINT and is a client of the daemon like any
application. For I/O made through MOUNTPOINT on protected files it sees
every write exactly (journaled before it reaches SOURCE, for ``on-write``
entries), every close (with its result), and every I/O error: an EIO from
SOURCE on an ``auto`` entry is reported, the daemon heals the file, and the
read or write is retried, so the application gets correct data. Unprotected
files pass straight through. If the daemon goes away, I/O keeps passing
through and each change that could not be journaled is logged.

Built on mfusepy with libfuse3, multithreaded, without the writeback cache
(which would merge writes and hide per-write errors until close).
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
import mfusepy  # noqa: E402  (must see FUSE_LIBRARY_NAME first)

from ..client import Client, WriteStream  # noqa: E402
from ..errors import DaemonUnavailable, FiletwinError, NotFound  # noqa: E402
from ..heal import IO_ERRNOS  # noqa: E402

log = logging.getLogger("filetwin.mount")
ENTRY_CACHE_S = 1.0
#: fuse_main's status when its loop ended with an error, a signal included
FUSE_LOOP_ENDED = 8
STAT_KEYS = (
    "st_atime",
    "st_ctime",
    "st_gid",
    "st_mode",
    "st_mtime",
    "st_nlink",
    "st_size",
    "st_uid",
    "st_ino",
    "st_blocks",
    "st_blksize",
    "st_rdev",
)


@dataclass
class Handle:
    fd: int
    real: str
    flags: int
    entry: dict[str, Any] | None
    stream: WriteStream | None = None
    size_at_open: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: serialises heals of this handle (FUSE threads may meet the same EIO at once)
    heal_lock: threading.Lock = field(default_factory=threading.Lock)
    #: descriptors of the damaged file, replaced by a heal; closed at release,
    #: never before, so that another thread's pread on one cannot hit a reused fd
    retired: list[int] = field(default_factory=list)
    #: a flush already told the application (and the journal) that the close failed
    close_failed: bool = False


def _replaced(path: str, fd: int) -> bool:
    """True if ``path`` is now another file than the one open on ``fd``."""
    try:
        now, held = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino)


class Interceptor(mfusepy.Operations):
    """Passthrough of ``source``; see the module docstring."""

    use_ns = True

    def __init__(self, source: str, client: Client, faults: list[str] | None = None) -> None:
        self.source = os.path.realpath(source)
        self.client = client
        #: test switches "close:GLOB": closes of matching files fail with EIO and
        #: lose the writes made since the open, as a failing disk would
        self.faults = faults or []
        self._handles: dict[int, Handle] = {}
        self._entries: dict[str, dict[str, Any]] = {}
        self._entries_at = 0.0
        self._lock = threading.Lock()
        self.unjournaled = 0

    # helpers -----------------------------------------------------------
    def _real(self, path: str) -> str:
        return os.path.join(self.source, path.lstrip("/"))

    def _entry(self, real: str, fresh: bool = False) -> dict[str, Any] | None:
        now = time.monotonic()
        with self._lock:
            stale = fresh or now - self._entries_at > ENTRY_CACHE_S
        if stale:
            try:
                rows = self.client.status()
                with self._lock:
                    self._entries = {r["path"]: r for r in rows}
                    self._entries_at = now
            except FiletwinError as e:
                log.warning("cannot read the daemon's entries: %s", e)
        with self._lock:
            return self._entries.get(real)

    def _journal(
        self, h: Handle, kind: str, offset: int = 0, payload: bytes = b"", wait: bool = True
    ) -> None:
        """Journal one record. ``batch`` entries pipeline writes (``wait`` False):
        their acks are collected at the next flush, fsync or close, the points
        where an application learns its writes are safe; ``always`` entries
        wait for each record's fdatasync before the write reaches SOURCE."""
        if h.stream is None:
            if h.entry is not None and h.entry["backup_mode"] == "on-write":
                self.unjournaled += 1
                log.warning("not journaled (no daemon): %s of %s at %d", kind, h.real, offset)
            return
        try:
            if wait or h.stream.sync_mode == "always":
                h.stream.send(kind, offset, payload)
            else:
                h.stream.send_nowait(kind, offset, payload)
        except FiletwinError as e:
            log.warning("not journaled: %s of %s at %d: %s", kind, h.real, offset, e)
            self.unjournaled += 1
            h.stream.close()
            h.stream = None

    def _collect(self, h: Handle) -> None:
        if h.stream is None:
            return
        try:
            h.stream.collect()
        except FiletwinError as e:
            log.warning("not journaled: writes to %s: %s", h.real, e)
            self.unjournaled += 1
            h.stream.close()
            h.stream = None

    def _heal(self, h: Handle, err: OSError, fd: int) -> bool:
        """Report ``err``, met on ``fd``; True if the file was healed (``h.fd`` is
        then the healed file's descriptor: retry the call on it)."""
        if err.errno not in IO_ERRNOS:
            return False
        if h.entry is None:
            # Protected since the cache was read? Ask now: an error is rare.
            h.entry = self._entry(h.real, fresh=True)
            if h.entry is None:
                return False
        with h.heal_lock:
            if h.fd != fd:
                return True  # another thread healed the file meanwhile
            if not _replaced(h.real, fd):
                try:
                    self.client.request_recovery(
                        h.real, reason=f"{err.strerror} through the interceptor", trigger="auto"
                    )
                except FiletwinError as e:
                    log.warning("%s on %s not healed: %s", err.strerror, h.real, e)
                    return False
            # else: healed since this handle was opened (through another handle);
            # the damaged file is only this descriptor's, so reopening is enough.
            h.retired.append(h.fd)
            h.fd = os.open(h.real, h.flags & ~(os.O_TRUNC | os.O_CREAT | os.O_EXCL))
        return True

    def _fault(self, h: Handle, kind: str) -> bool:
        return any(
            f.startswith(kind + ":") and fnmatch.fnmatch(h.real, f.split(":", 1)[1])
            for f in self.faults
        )

    def _open_handle(self, real: str, fd: int, flags: int) -> int:
        entry = self._entry(real)
        h = Handle(fd, real, flags, entry, size_at_open=os.fstat(fd).st_size)
        if (
            entry is not None
            and entry["backup_mode"] == "on-write"
            and (flags & (os.O_WRONLY | os.O_RDWR))
        ):
            try:
                h.stream = self.client.open_stream(real)
            except FiletwinError as e:
                log.warning("cannot journal writes to %s: %s", real, e)
        if flags & os.O_TRUNC and h.size_at_open == 0:
            self._journal(h, "truncate", 0)
        with self._lock:
            self._handles[fd] = h
        return fd

    def _handle(self, fh: int) -> Handle:
        with self._lock:
            return self._handles[fh]

    # files -------------------------------------------------------------
    def open(self, path: str, flags: int) -> int:
        real = self._real(path)
        # O_TRUNC is journaled as a truncate record, then done on SOURCE.
        fd = os.open(real, flags)
        return self._open_handle(real, fd, flags)

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        real = self._real(path)
        fd = os.open(real, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        return self._open_handle(real, fd, os.O_WRONLY | os.O_CREAT)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        h = self._handle(fh)
        fd = h.fd
        try:
            return os.pread(fd, size, offset)
        except OSError as e:
            if not self._heal(h, e, fd):
                raise
        return os.pread(h.fd, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        h = self._handle(fh)
        with h.lock:
            self._journal(h, "write", offset, data, wait=False)
            fd = h.fd
            try:
                return os.pwrite(fd, data, offset)
            except OSError as e:
                if not self._heal(h, e, fd):
                    raise
            return os.pwrite(h.fd, data, offset)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        if fh is not None and fh in self._handles:
            h = self._handle(fh)
            self._journal(h, "truncate", length)
            os.ftruncate(h.fd, length)
            return 0
        real = self._real(path)
        entry = self._entry(real)
        if entry is not None and entry["backup_mode"] == "on-write":
            try:
                self.client.notify_truncate(real, length)
            except FiletwinError as e:
                log.warning("not journaled: truncate of %s: %s", real, e)
        os.truncate(real, length)
        return 0

    def flush(self, path: str, fh: int) -> int:
        h = self._handle(fh)
        self._collect(h)
        if self._fault(h, "close") and h.flags & (os.O_WRONLY | os.O_RDWR):
            # The failing disk: the writes since the open do not survive.
            os.ftruncate(h.fd, h.size_at_open)
            os.fsync(h.fd)
            if not h.close_failed:
                self._journal(h, "close-failed")
                h.close_failed = True
            raise mfusepy.FuseOSError(errno.EIO)
        return 0

    def release(self, path: str, fh: int) -> int:
        with self._lock:
            h = self._handles.pop(fh)
        failed = False
        for fd in h.retired:
            with contextlib.suppress(OSError):
                os.close(fd)  # the damaged file's: its errors are not this close's
        try:
            os.close(h.fd)
        except OSError:
            failed = True
        if h.stream is not None and not h.close_failed:
            self._journal(h, "close-failed" if failed else "close-ok")
        if h.stream is not None:
            h.stream.close()
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        h = self._handle(fh)
        self._collect(h)
        if datasync:
            os.fdatasync(h.fd)
        else:
            os.fsync(h.fd)
        return 0

    # metadata and directories: straight through ------------------------
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        st = (
            os.fstat(self._handle(fh).fd)
            if fh is not None and fh in self._handles
            else (os.lstat(self._real(path)))
        )
        attrs = {k: getattr(st, k) for k in STAT_KEYS if hasattr(st, k)}
        for k in ("st_atime", "st_mtime", "st_ctime"):
            attrs[k] = getattr(st, k + "_ns")
        return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    def readlink(self, path: str) -> str:
        return os.readlink(self._real(path))

    def mknod(self, path: str, mode: int, dev: int) -> int:
        os.mknod(self._real(path), mode, dev)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._real(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        return 0

    def unlink(self, path: str) -> int:
        os.unlink(self._real(path))
        return 0

    def symlink(self, target: str, source: str) -> int:
        os.symlink(source, self._real(target))
        return 0

    def link(self, target: str, source: str) -> int:
        os.link(self._real(source), self._real(target))
        return 0

    def rename(self, old: str, new: str) -> int:
        os.rename(self._real(old), self._real(new))
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._real(path), uid, gid, follow_symlinks=False)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        if times is None:
            os.utime(self._real(path), follow_symlinks=False)
        else:
            os.utime(self._real(path), ns=times, follow_symlinks=False)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self._real(path))
        return {
            k: getattr(sv, k)
            for k in (
                "f_bavail",
                "f_bfree",
                "f_blocks",
                "f_bsize",
                "f_favail",
                "f_ffree",
                "f_files",
                "f_flag",
                "f_frsize",
                "f_namemax",
            )
        }

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._real(path), amode):
            raise mfusepy.FuseOSError(errno.EACCES)
        return 0


def mount(
    source: str,
    mountpoint: str,
    client: Client,
    faults: list[str] | None = None,
    foreground: bool = True,
) -> None:
    """Serve ``source`` at ``mountpoint`` until unmounted (SIGTERM/SIGINT unmount it)."""
    if not os.path.isdir(source):
        raise NotFound(f"{source} is not a directory")
    if not os.path.isdir(mountpoint):
        raise NotFound(f"mount point {mountpoint} is not a directory")
    try:
        client.ping()
    except DaemonUnavailable:
        log.warning("no daemon answers: I/O passes through, nothing is journaled")
    ops = Interceptor(source, client, faults)
    try:
        mfusepy.FUSE(
            ops,
            mountpoint,
            foreground=foreground,
            nothreads=False,
            fsname=f"filetwin:{ops.source}",
            default_permissions=True,
            allow_other=True,
        )
    except RuntimeError as e:
        # libfuse 3 stores the signal that ended its loop (SIGTERM, SIGINT,
        # SIGHUP: the ways to unmount) as the session's error, so fuse_main
        # returns its "loop failed" status for a clean unmount too.
        if e.args != (FUSE_LOOP_ENDED,):
            raise
    log.info("%s unmounted", mountpoint)
    if ops.unjournaled:
        log.warning("%d change(s) could not be journaled", ops.unjournaled)
