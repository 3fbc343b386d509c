"""The interceptor: ``filetwin mount SOURCE MOUNTPOINT``, a FUSE passthrough,
or ``filetwin mount --in-place DIR``, the same over the directory itself.

It serves SOURCE at MOUNTPOINT and is a client of the daemon like any
application. For I/O made through MOUNTPOINT on protected files it sees
every write exactly (journaled before it reaches SOURCE, for ``on-write``
entries), every close (with its result, which reaches the application: a
failed close is recorded and reported, never taken for a good one), and
every I/O error: an EIO from SOURCE on an ``auto`` entry is reported, the
daemon heals the file, and the read or write is retried, so the application
gets correct data. Unprotected files pass straight through. If the daemon
goes away, I/O keeps passing through and each change that could not be
journaled is logged.

SOURCE is reached only through a directory descriptor opened before the
mount, every path resolved beneath it without following symlinks
(capture/srcdir.py): for an in-place mount, SOURCE is the directory the
mount covers, so programs keep their usual paths; see capture/inplace.py for
what else that needs.

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
from typing import Any, cast

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
import mfusepy  # noqa: E402  (must see FUSE_LIBRARY_NAME first)

from ..client import Client  # noqa: E402
from ..errors import FiletwinError  # noqa: E402
from ..heal import IO_ERRNOS  # noqa: E402
from .handles import Handle, Shared  # noqa: E402
from .inplace import process_tree_has  # noqa: E402
from .srcdir import SourceDir  # noqa: E402

log = logging.getLogger("filetwin.mount")
ENTRY_CACHE_S = 1.0
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


class Interceptor(mfusepy.Operations):
    """Passthrough of ``source``; see the module docstring."""

    use_ns = True
    # Calls on an open file get no path: libfuse then takes no lock on the
    # file's path, which a rename over it (a heal through an in-place mount)
    # would wait on while the failing read that asked for the heal holds it.
    flag_nopath = True
    flag_nullpath_ok = True

    def __init__(
        self,
        source: SourceDir,
        client: Client,
        faults: list[str] | None = None,
        entry_root: str | None = None,
        in_place: bool = False,
    ) -> None:
        self.src = source
        self.source = source.path
        #: entries name files under this directory (the mountpoint, in place)
        self.entry_root = entry_root or source.path
        self.in_place = in_place
        self.client = client
        #: test switches "close:GLOB": closes of matching files fail with EIO and
        #: lose the writes made since the open, as a failing disk would
        self.faults = faults or []
        self._handles: dict[int, Handle] = {}
        self._shared: dict[str, Shared] = {}
        self._dirs: dict[int, list[str]] = {}
        self._dir_seq = 0
        self._entries: dict[str, dict[str, Any]] = {}
        self._entries_at = 0.0
        self._daemon_pid = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.unjournaled = 0

    # the daemon's entries, refreshed off the I/O path ---------------------
    def refresh(self) -> None:
        """Read the daemon's entries (and its pid). Never called from a FUSE
        request of an opener: the daemon may be waiting on this very mount."""
        try:
            pid = int(self.client.ping().get("pid", 0))
            rows = self.client.status()
        except FiletwinError as e:
            log.debug("cannot read the daemon's entries: %s", e)
            return
        with self._lock:
            self._entries = {r["path"]: cast(dict[str, Any], r) for r in rows}
            self._entries_at = time.monotonic()
            self._daemon_pid = pid

    def start_refresher(self) -> None:
        def loop() -> None:
            while not self._stop.wait(ENTRY_CACHE_S):
                self.refresh()

        threading.Thread(target=loop, name="filetwin-entries", daemon=True).start()

    def stop_refresher(self) -> None:
        self._stop.set()

    def start_heal_follower(self) -> None:
        """Heals the daemon does on its own (a backup's read error, verify, the
        scrub, a failed close) replace a file under the handles open here: follow
        its ``healed`` events and move those handles onto the healed file, with
        the writes made through them re-applied (see ``_switch``)."""

        def loop() -> None:
            follower = Client(socket_path=self.client.socket_path)
            while not self._stop.is_set():
                try:
                    for event in follower.follow_events(limit=1):
                        if self._stop.is_set():
                            return
                        if event.get("kind") == "healed" and event.get("path"):
                            self._healed_elsewhere(str(event["path"]))
                except FiletwinError as e:
                    log.debug("following the daemon's heals: %s", e)
                    self._stop.wait(1.0)

        threading.Thread(target=loop, name="filetwin-heals", daemon=True).start()

    def _healed_elsewhere(self, real: str) -> None:
        with self._lock:
            s = self._shared.get(real)
            handles = [x for x in self._handles.values() if s is not None and x.shared is s]
        if s is None or not handles:
            return
        h = handles[0]
        with s.heal_lock:
            if self._replaced(h, h.fd):
                self._switch(h)

    def _real(self, path: str) -> str:
        rel = self.src.rel(path)
        return self.entry_root if rel == "." else os.path.join(self.entry_root, rel)

    def _entry(self, real: str, fresh: bool = False) -> dict[str, Any] | None:
        if fresh:
            self.refresh()
        with self._lock:
            return self._entries.get(real)

    def _from_daemon(self) -> bool:
        """True if the current request comes from the daemon (in place only)."""
        if not self.in_place:
            return False
        with self._lock:
            daemon = self._daemon_pid
        return process_tree_has(mfusepy.fuse_get_context()[2], daemon)

    # journal -----------------------------------------------------------
    def _journal(
        self, h: Handle, kind: str, offset: int = 0, payload: bytes = b"", wait: bool = True
    ) -> None:
        """Journal one record. ``batch`` entries pipeline writes (``wait`` False):
        their acks are collected at the next flush, fsync or close, the points
        where an application learns its writes are safe; ``always`` entries
        wait for each record's fdatasync before the write reaches SOURCE."""
        if h.stream is None:
            if h.entry is not None and h.entry["backup_mode"] == "on-write" and not h.raw:
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

    def _close_failed(self, h: Handle, err: OSError) -> None:
        """Record a failed close once per handle: a ``close-failed`` record for an
        on-write entry, a failed close reported to the daemon for an on-close one
        (an event; the content that close left is not a good version)."""
        if h.close_failed or h.entry is None or h.raw:
            return
        h.close_failed = True
        log.warning("a close of %s failed: %s", h.real, err.strerror)
        if h.stream is not None:
            self._journal(h, "close-failed")
            return
        try:
            self.client.notify_close(h.real, ok=False)
        except FiletwinError as e:
            log.warning("the failed close of %s could not be reported: %s", h.real, e)

    # healing -----------------------------------------------------------
    def _heal(self, h: Handle, err: OSError, fd: int, writing: bool = False) -> bool:
        """Report ``err``, met on ``fd``; True if the file was healed and the call
        may be retried on ``h.fd``: every handle of the file then reads and writes
        the healed file, on which the writes made through them were re-applied.
        False if it was not healed, or if those writes could not be re-applied
        (the call must fail: an acknowledged write is never silently undone)."""
        if err.errno not in IO_ERRNOS or h.raw:
            return False
        if h.entry is None:
            # Protected since the cache was read? Ask now: an error is rare.
            h.entry = self._entry(h.real, fresh=True)
            if h.entry is None:
                return False
        if writing and self.in_place:
            # The kernel holds the file's inode lock during a write, and the
            # heal's rename over the file (through this very mount) needs it:
            # heal once this write has failed, and let the application know.
            threading.Thread(target=self._heal_later, args=(h, err, fd), daemon=True).start()
            return False
        with h.shared.heal_lock if h.shared is not None else h.heal_lock:
            if h.fd == fd:
                if not self._replaced(h, fd) and not self._request_heal(h, err):
                    return False
                # else: healed since this handle was opened (through another
                # handle); the damaged file is only this descriptor's.
                self._switch(h)
            # else: another thread healed the file meanwhile
        return self._restorable(h)

    def _heal_later(self, h: Handle, err: OSError, fd: int) -> None:
        with h.shared.heal_lock if h.shared is not None else h.heal_lock:
            if h.fd == fd and (self._replaced(h, fd) or self._request_heal(h, err)):
                self._switch(h)

    def _switch(self, h: Handle) -> None:
        """Put the healed file under every handle of ``h``'s file (the old
        descriptors are retired, not closed: another thread may be using one)
        and re-apply the writes made through them since they were opened."""
        s = h.shared
        if s is None:
            handles = [h]
        else:
            with self._lock:
                handles = [x for x in self._handles.values() if x.shared is s]
        with s.lock if s is not None else contextlib.nullcontext():
            for x in handles:
                x.retired.append(x.fd)
                x.fd = self.src.open_file(x.rel, x.flags & ~(os.O_TRUNC | os.O_CREAT | os.O_EXCL))
            if s is not None and s.overlay.changes and s.overlay.complete:
                fd = self.src.open_file(h.rel, os.O_WRONLY)
                try:
                    s.overlay.apply(fd)
                finally:
                    os.close(fd)
                log.info(
                    "%d change(s) to %s re-applied after its heal",
                    len(s.overlay.changes),
                    h.real,
                )

    @staticmethod
    def _restorable(h: Handle) -> bool:
        """True if no write made through ``h``'s file was lost by its heal."""
        if h.shared is None:
            return not h.wrote
        return h.shared.overlay.complete

    def _request_heal(self, h: Handle, err: OSError) -> bool:
        try:
            result = self.client.request_recovery(
                h.real, reason=f"{err.strerror} through the interceptor", trigger="auto"
            )
        except FiletwinError as e:
            log.warning("%s on %s not healed: %s", err.strerror, h.real, e)
            return False
        # Not healed: the file verified readable (the error was transient); the
        # call fails with its error rather than retrying into the same one.
        return bool(result.get("healed", True))

    def _replaced(self, h: Handle, fd: int) -> bool:
        """True if ``h``'s path is now another file than the one open on ``fd``."""
        try:
            now, held = self.src.lstat(h.rel), os.fstat(fd)
        except OSError:
            return False
        return (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino)

    def _fault(self, h: Handle, kind: str) -> bool:
        return any(
            f.startswith(kind + ":") and fnmatch.fnmatch(h.real, f.split(":", 1)[1])
            for f in self.faults
        )

    def _open_handle(self, path: str, fd: int, flags: int) -> int:
        real = self._real(path)
        entry = self._entry(real)
        raw = entry is not None and self._from_daemon()
        h = Handle(fd, real, self.src.rel(path), flags, entry, raw=raw)
        if entry is not None and not raw:
            with self._lock:
                h.shared = self._shared.setdefault(real, Shared())
                h.shared.opens += 1
            h.size_at_open = os.fstat(fd).st_size
            if entry["backup_mode"] == "on-write" and h.writable:
                try:
                    h.stream = self.client.open_stream(real)
                except FiletwinError as e:
                    log.warning("cannot journal writes to %s: %s", real, e)
            if flags & os.O_TRUNC and h.size_at_open == 0:
                self._journal(h, "truncate", 0)
                h.shared.overlay.add_truncate(0)
        with self._lock:
            self._handles[fd] = h
        return fd

    def _handle(self, fh: int) -> Handle:
        with self._lock:
            return self._handles[fh]

    # files -------------------------------------------------------------
    def open(self, path: str, flags: int) -> int:
        # O_TRUNC is journaled as a truncate record, then done on SOURCE.
        fd = self.src.open_file(path, flags)
        return self._open_handle(path, fd, flags)

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        # mfusepy hands over the open flags: O_RDWR and O_EXCL must reach SOURCE.
        flags = (fi if isinstance(fi, int) else os.O_WRONLY | os.O_TRUNC) | os.O_CREAT
        fd = self.src.open_file(path, flags, mode)
        return self._open_handle(path, fd, flags & ~os.O_TRUNC)

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
        if h.raw:
            return os.pwrite(h.fd, data, offset)
        # One order for the writes of all handles of a file: the overlay's.
        with h.shared.lock if h.shared is not None else h.lock:
            if self.in_place:
                # Journaled once it reached SOURCE: a write that fails here is
                # never retried (see _heal), so it must not be in the journal.
                n = self._write_in_place(h, data, offset)
            else:
                self._journal(h, "write", offset, data, wait=False)
                fd = h.fd
                try:
                    n = os.pwrite(fd, data, offset)
                except OSError as e:
                    if not self._heal(h, e, fd):
                        raise
                    n = os.pwrite(h.fd, data, offset)
            h.wrote = True
            if h.shared is not None:
                h.shared.overlay.add_write(offset, data[:n])
            return n

    def _write_in_place(self, h: Handle, data: bytes, offset: int) -> int:
        fd = h.fd
        try:
            n = os.pwrite(fd, data, offset)
        except OSError as e:
            self._heal(h, e, fd, writing=True)
            raise
        self._journal(h, "write", offset, data[:n], wait=False)
        return n

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        if fh is not None:
            h = self._handle(fh)
            with h.shared.lock if h.shared is not None else h.lock:
                self._journal(h, "truncate", length)
                os.ftruncate(h.fd, length)
                h.wrote = True
                if h.shared is not None:
                    h.shared.overlay.add_truncate(length)
            return 0
        if path is None:
            raise mfusepy.FuseOSError(errno.EBADF)
        real = self._real(path)
        with self._lock:
            shared = self._shared.get(real)
        if shared is not None:
            with shared.lock:
                shared.overlay.add_truncate(length)
        entry = self._entry(real)
        if entry is not None and entry["backup_mode"] == "on-write" and not self._from_daemon():
            try:
                self.client.notify_truncate(real, length)
            except FiletwinError as e:
                log.warning("not journaled: truncate of %s: %s", real, e)
        fd = self.src.open_file(path, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.ftruncate(fd, length)
        finally:
            os.close(fd)
        return 0

    def flush(self, path: str, fh: int) -> int:
        """The application's close: collect the journal's acks, then close a
        duplicate of SOURCE's descriptor so that SOURCE's own flush runs now and
        its error (NFS, FUSE, a failing disk) reaches the application."""
        h = self._handle(fh)
        if not h.writable:
            return 0
        self._collect(h)
        if self._fault(h, "close"):
            # The failing disk: the writes since the open do not survive.
            os.ftruncate(h.fd, h.size_at_open)
            os.fsync(h.fd)
            self._close_failed(h, OSError(errno.EIO, os.strerror(errno.EIO)))
            raise mfusepy.FuseOSError(errno.EIO)
        try:
            os.close(os.dup(h.fd))
        except OSError as e:
            self._close_failed(h, e)
            raise
        return 0

    def release(self, path: str, fh: int) -> int:
        """The last close: its result cannot reach the application any more (the
        kernel does not wait for it), so a failure is recorded and reported."""
        with self._lock:
            h = self._handles.pop(fh)
            if h.shared is not None:
                h.shared.opens -= 1
                if h.shared.opens == 0 and self._shared.get(h.real) is h.shared:
                    del self._shared[h.real]
        for fd in h.retired:
            with contextlib.suppress(OSError):
                os.close(fd)  # the damaged file's: its errors are not this close's
        try:
            os.close(h.fd)
        except OSError as e:
            if h.writable:
                self._close_failed(h, e)
        if h.stream is not None:
            if not h.close_failed:
                self._journal(h, "close-ok")
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

    # metadata and directories: straight through, fd-relative, no-follow -
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        st = (
            os.fstat(self._handle(fh).fd)
            if fh is not None and fh in self._handles
            else self.src.lstat(path)
        )
        attrs = {k: getattr(st, k) for k in STAT_KEYS if hasattr(st, k)}
        for k in ("st_atime", "st_mtime", "st_ctime"):
            attrs[k] = getattr(st, k + "_ns")
        return attrs

    def opendir(self, path: str) -> int:
        # Read at opendir (readdir gets no path, see flag_nullpath_ok).
        names = [".", "..", *self.src.listdir(path)]
        with self._lock:
            self._dir_seq += 1
            self._dirs[self._dir_seq] = names
            return self._dir_seq

    def readdir(self, path: str | None, fh: int) -> list[str]:
        with self._lock:
            return self._dirs.get(fh, [".", ".."])

    def releasedir(self, path: str | None, fh: int) -> int:
        with self._lock:
            self._dirs.pop(fh, None)
        return 0

    def readlink(self, path: str) -> str:
        with self.src.parent(path) as (d, name):
            return os.readlink(name, dir_fd=d)

    def mknod(self, path: str, mode: int, dev: int) -> int:
        with self.src.parent(path) as (d, name):
            os.mknod(name, mode, dev, dir_fd=d)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        with self.src.parent(path) as (d, name):
            os.mkdir(name, mode, dir_fd=d)
        return 0

    def rmdir(self, path: str) -> int:
        with self.src.parent(path) as (d, name):
            os.rmdir(name, dir_fd=d)
        return 0

    def unlink(self, path: str) -> int:
        with self.src.parent(path) as (d, name):
            os.unlink(name, dir_fd=d)
        return 0

    def symlink(self, target: str, source: str) -> int:
        with self.src.parent(target) as (d, name):
            os.symlink(source, name, dir_fd=d)
        return 0

    def link(self, target: str, source: str) -> int:
        with self.src.parent(source) as (sd, sname), self.src.parent(target) as (td, tname):
            os.link(sname, tname, src_dir_fd=sd, dst_dir_fd=td, follow_symlinks=False)
        return 0

    def rename(self, old: str, new: str) -> int:
        with self.src.parent(old) as (od, oname), self.src.parent(new) as (nd, nname):
            os.rename(oname, nname, src_dir_fd=od, dst_dir_fd=nd)
        return 0

    def _open_fd(self, fh: int | None) -> int | None:
        """The descriptor of open handle ``fh`` (None: operate on the path)."""
        if fh is None:
            return None
        with self._lock:
            h = self._handles.get(fh)
        if h is None:
            raise mfusepy.FuseOSError(errno.EBADF)
        return h.fd

    def chmod(self, path: str | None, fh: int | None = None, *, mode: int) -> int:
        fd = self._open_fd(fh)
        if fd is not None:
            os.fchmod(fd, mode)
            return 0
        with self.src.parent(path or "/") as (d, name):
            os.chmod(name, mode, dir_fd=d, follow_symlinks=False)
        return 0

    def chown(self, path: str | None, fh: int | None = None, *, uid: int, gid: int) -> int:
        fd = self._open_fd(fh)
        if fd is not None:
            os.fchown(fd, uid, gid)
            return 0
        with self.src.parent(path or "/") as (d, name):
            os.chown(name, uid, gid, dir_fd=d, follow_symlinks=False)
        return 0

    def utimens(
        self, path: str | None, fh: int | None = None, *, times: tuple[int, int] | None = None
    ) -> int:
        fd = self._open_fd(fh)
        if fd is not None:
            os.utime(fd, ns=times) if times is not None else os.utime(fd)
            return 0
        with self.src.parent(path or "/") as (d, name):
            if times is None:
                os.utime(name, dir_fd=d, follow_symlinks=False)
            else:
                os.utime(name, ns=times, dir_fd=d, follow_symlinks=False)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self.src.fd)
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
        with self.src.parent(path) as (d, name):
            if not os.access(name, amode, dir_fd=d, follow_symlinks=False):
                raise mfusepy.FuseOSError(errno.EACCES)
        return 0
