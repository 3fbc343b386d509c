"""``filetwin.open``: a drop-in file object whose writes are journaled.

For an ``on-write`` entry every ``write``/``writelines``/``truncate`` is sent
to the daemon's journal and acknowledged *before* the bytes reach the file,
and ``close`` records whether the close succeeded. For an ``on-close`` entry
the close triggers a version as usual; a close that fails is reported to the
daemon (so the content it left is not taken as a good version) and raised.
A file opened only for reading, or an unprotected one, is the built-in
``open``. If the daemon cannot be reached, the application's own write still
happens and the library reports that it was not journaled:
``on_unjournaled="warn"`` (default) warns once per file, ``"raise"`` raises
``NotJournaled`` after the write was made. Every failure of the daemon's
sockets is ``DaemonUnavailable`` (or its subclass ``NotJournaled``), never a
bare ``ConnectionResetError``.

For an entry whose recovery mode is ``auto`` (either backup mode), an I/O
error (EIO and its kin) on read, write or truncate is reported to the daemon,
which heals the file; the call is then retried on the healed file. No write
acknowledged to the application is lost by that: the heal replays the
journal, and the changes no journal holds (an on-close entry's, an on-write
entry's after its stream was lost) are kept in a per-open overlay, bounded by
``OVERLAY_LIMIT`` bytes, and put back on the healed file, in order, before
the call is retried. Past the bound, or when a change was neither journaled
nor kept, no heal is asked for and the error is raised. A failed close is
never retried: the error reaches the application, and the daemon alone
decides about a heal (one heal, not one per reporter).
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import io
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any, TypeVar

from .client import Client, WriteStream
from .errors import DaemonUnavailable, FiletwinError, NotFound
from .heal import IO_ERRNOS
from .overlay import OVERLAY_LIMIT, Overlay

T = TypeVar("T")


class NotJournaled(DaemonUnavailable):
    """The write happened, but the daemon could not journal it."""


class JournalWarning(UserWarning):
    """Writes to a protected file were made without being journaled."""


def _fileio_mode(mode: str) -> str:
    """The ``io.FileIO`` mode that reopens a file opened with ``mode`` without
    truncating or creating it again ("w" on a descriptor does neither)."""
    readable = "r" in mode or "+" in mode
    if "a" in mode:
        return "a+" if readable else "a"
    if any(c in mode for c in "wx+"):
        return "r+" if readable else "w"
    return "r"


class JournaledFile(io.RawIOBase):
    """An unbuffered binary file whose changes are journaled first.

    ``heals``: report an I/O error to the daemon and retry the call on the
    healed file (for ``auto`` entries); then the changes no journal holds are
    kept in an ``Overlay`` for the heal. ``client`` also receives the report
    of a failed close when no stream carries it.
    """

    def __init__(
        self,
        path: str,
        mode: str,
        stream: WriteStream | None,
        on_unjournaled: str,
        *,
        client: Client | None = None,
        journaled: bool = True,
        heals: bool = True,
        overlay_limit: int | None = None,
    ) -> None:
        super().__init__()
        self.name = path
        self._mode = mode
        self._append = "a" in mode
        self._writing = any(c in mode for c in "wax+")
        self._client = client
        self._journaled = journaled
        self._stream = stream
        self._on_unjournaled = on_unjournaled
        self._warned = False
        self._pending_error: NotJournaled | None = None
        self._heals = heals and client is not None
        self._overlay: Overlay | None = (
            Overlay(OVERLAY_LIMIT if overlay_limit is None else overlay_limit)
            if self._heals
            else None
        )
        self._dirfd = -1
        # The directory is reached once, as the application named it; the file
        # is (re)opened relative to it and never through a symlink at its name,
        # so a heal's reopen cannot be sent elsewhere by a swapped name.
        dirfd = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._dirfd = dirfd
        try:
            # "a" and "r+" change nothing at open. "x" creates an empty file: for
            # a heal that is a truncate to nothing, which only the overlay keeps.
            recorded = "x" not in mode
            if "w" in mode:
                # Opening truncates the file: that is a change like any write, and
                # it is journaled before it happens (else the journal would replay
                # the new bytes over the old tail, content that never existed).
                recorded = self._journal("truncate", 0)
            self._raw = io.FileIO(
                os.path.basename(path),
                mode.replace("b", "").replace("t", ""),
                opener=self._opener,
            )
        except BaseException:
            os.close(dirfd)
            self._dirfd = -1
            self._drop_stream()
            raise
        if not recorded:
            self._kept(lambda o: o.add_truncate(0))

    def _opener(self, name: str, flags: int) -> int:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=self._dirfd)

    # what is journaled -------------------------------------------------
    def _journal(self, kind: str, offset: int = 0, payload: bytes = b"") -> bool:
        """Send one record; True if the journal holds it."""
        if not self._journaled:
            return False
        if self._stream is None:
            self._unjournaled(f"the daemon was not reachable when {self.name} was opened")
            return False
        try:
            self._stream.send(kind, offset, payload)
        except (DaemonUnavailable, OSError) as e:
            # The stream's socket broke (the daemon was killed or restarted):
            # whatever the error's type, that is no daemon, not a bug.
            self._drop_stream()
            self._unjournaled(str(e))
            return False
        return True

    def _drop_stream(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(OSError):
                self._stream.close()
            self._stream = None

    def _unjournaled(self, why: str) -> None:
        message = f"a change to {self.name} was not journaled: {why}"
        if self._on_unjournaled == "raise":
            self._pending_error = NotJournaled(message)
        elif not self._warned:
            warnings.warn(message, JournalWarning, stacklevel=5)
            self._warned = True

    def _kept(self, change: Callable[[Overlay], None]) -> None:
        """Keep a change no journal holds for a heal (a no-op unless this file heals)."""
        if self._overlay is not None:
            change(self._overlay)

    # healing: an I/O error is reported, the file healed and the call retried --
    def _healed(self, err: OSError) -> bool:
        """Report ``err``; True if the daemon healed the file (then it is reopened
        and the changes no journal holds are made again on it)."""
        if err.errno not in IO_ERRNOS or not self._heals or self._client is None:
            return False
        overlay = self._overlay
        if overlay is None or not overlay.complete:
            # A heal would drop acknowledged changes kept nowhere: the error stands.
            return False
        try:
            self._client.request_recovery(
                self.name, reason=f"{err.strerror} met by filetwin.open", trigger="auto"
            )
        except FiletwinError:
            return False  # not an auto entry, no daemon, or the heal failed: the error stands
        position = 0 if self._raw.closed else self._raw.tell()
        with contextlib.suppress(OSError):
            self._raw.close()
        # Reopen the healed file in the same way, without truncating it again;
        # an appending file gets O_APPEND only after the overlay is put back
        # (pwrite on an O_APPEND descriptor would append, not write in place).
        mode = _fileio_mode(self._mode)
        if "+" in mode or "r" not in mode:
            flags = os.O_RDWR if "+" in mode else os.O_WRONLY
        else:
            flags = os.O_RDONLY
        fd = self._opener(os.path.basename(self.name), flags)
        try:
            overlay.apply(fd)
            if self._append:
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
            self._raw = io.FileIO(fd, mode, closefd=True)
        except BaseException:
            os.close(fd)
            raise
        self._raw.seek(position)
        return True

    def _retry(self, op: Callable[[], T]) -> T:
        try:
            return op()
        except OSError as e:
            if not self._healed(e):
                raise
        return op()

    def _raise_pending(self) -> None:
        err = self._pending_error
        if err is not None:
            self._pending_error = None
            raise err

    def write(self, b: Any) -> int:
        data = bytes(b)
        offset = os.fstat(self._raw.fileno()).st_size if self._append else self._raw.tell()
        recorded = self._journal("write", offset, data)
        start = self._raw.tell()
        where = [offset]

        def write_all() -> None:
            if self._append:
                where[0] = os.fstat(self._raw.fileno()).st_size
            else:
                self._raw.seek(start)
            view = memoryview(data)
            while view:
                n = self._raw.write(view)
                if n is None:
                    raise BlockingIOError("the file is non-blocking")
                view = view[n:]

        self._retry(write_all)
        if not recorded:
            self._kept(lambda o: o.add_write(where[0], data))
        self._raise_pending()
        return len(data)

    def writelines(self, lines: Iterable[Any]) -> None:
        for line in lines:
            self.write(line)

    def truncate(self, size: int | None = None) -> int:
        if size is None:
            size = self._raw.tell()
        recorded = self._journal("truncate", size)
        result = self._retry(lambda: self._raw.truncate(size))
        if not recorded:
            self._kept(lambda o: o.add_truncate(size))
        self._raise_pending()
        return result

    def mark(self, name: str) -> None:
        """Name this moment in the journal (restore it with ``--at mark:NAME``)."""
        self._journal("mark", 0, name.encode())
        self._raise_pending()

    def close(self) -> None:
        """Close the file and record the result; a failed close is raised.

        The failure goes to the journal (on-write, ``close-failed``) or, with
        no stream, to the daemon as a failed close (``notify_close(ok=False)``),
        so the content it left is never taken for a good version. The close is
        not retried and no heal is asked for here: the daemon heals an ``auto``
        entry on that report, once.
        """
        if self.closed:
            return
        if not hasattr(self, "_raw"):
            super().close()  # the open itself failed
            return
        failure: OSError | None = None
        try:
            try:
                self._raw.close()
            except OSError as e:
                failure = e
            if self._stream is not None:
                self._journal("close-ok" if failure is None else "close-failed")
                self._drop_stream()
            elif failure is not None and self._writing and self._client is not None:
                try:
                    self._client.notify_close(self.name, ok=False)
                except FiletwinError as e:
                    warnings.warn(
                        f"the failed close of {self.name} could not be reported: {e}",
                        JournalWarning,
                        stacklevel=2,
                    )
        finally:
            self._overlay = None
            if self._dirfd >= 0:
                os.close(self._dirfd)
                self._dirfd = -1
            super().close()
        if failure is not None:
            raise failure
        self._raise_pending()

    # plain file behaviour ----------------------------------------------
    def readinto(self, buffer: Any) -> int | None:
        start = self._raw.tell()

        def read() -> int | None:
            self._raw.seek(start)
            return self._raw.readinto(buffer)

        return self._retry(read)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def fileno(self) -> int:
        return self._raw.fileno()

    def flush(self) -> None:
        if hasattr(self, "_raw") and not self._raw.closed:
            self._raw.flush()

    def readable(self) -> bool:
        return self._raw.readable()

    def writable(self) -> bool:
        return self._raw.writable()

    def seekable(self) -> bool:
        return True

    @property
    def mode(self) -> str:
        return self._mode


def open(  # noqa: A001 - a drop-in for the built-in
    path: str | os.PathLike[str],
    mode: str = "r",
    *,
    client: Client | None = None,
    on_unjournaled: str = "warn",
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
) -> IO[Any]:
    """Open ``path`` like the built-in ``open``; journal its writes if it is on-write.

    Files that heal (``auto`` entries) and on-write files are unbuffered, so
    each ``write`` reaches the journal (or the heal's overlay) and the file
    before it returns; text modes wrap them with ``write_through``. An
    on-close entry that does not heal, opened for writing, is buffered like
    the built-in's file; only its close's result is reported.
    """
    if on_unjournaled not in ("warn", "raise"):
        raise ValueError("on_unjournaled must be 'warn' or 'raise'")
    abspath = os.path.abspath(os.fspath(path))
    writing = any(c in mode for c in "wax+")
    client = client or Client()
    stream: WriteStream | None = None
    entry: Mapping[str, Any] | None
    try:
        entry = client.status(abspath)
    except NotFound:
        entry = None
    except DaemonUnavailable:
        # Unknown: the file is written all the same, and the change reported unjournaled.
        entry = {
            "path": abspath,
            "backup_mode": "on-write" if writing else "on-close",
            "state": "unknown",
            "recovery_mode": "manual",
        }
    on_close = entry is not None and entry["backup_mode"] == "on-close"
    auto = entry is not None and entry["recovery_mode"] == "auto"
    if entry is None or (on_close and not auto and not writing):
        return builtins.open(abspath, mode, encoding=encoding, errors=errors, newline=newline)
    journaled = writing and entry["backup_mode"] == "on-write" and entry["state"] != "paused"
    if journaled and entry["state"] != "unknown":
        try:
            stream = client.open_stream(entry["path"])
        except DaemonUnavailable:
            stream = None
        except FiletwinError:
            journaled = False
    raw = JournaledFile(
        abspath,
        mode if "b" in mode else mode + "b",
        stream,
        on_unjournaled,
        client=client,
        journaled=journaled,
        heals=auto or not on_close,
    )
    if on_close and not auto:
        # Only the close is watched: buffer as the built-in does.
        buffered: io.BufferedRandom | io.BufferedWriter = (
            io.BufferedRandom(raw) if "+" in mode else io.BufferedWriter(raw)
        )
        if "b" in mode:
            return buffered
        return io.TextIOWrapper(buffered, encoding=encoding, errors=errors, newline=newline)
    if "b" in mode:
        return raw  # type: ignore[return-value]
    return io.TextIOWrapper(
        raw,
        encoding=encoding,
        errors=errors,
        newline=newline,
        write_through=True,
    )
