"""``filetwin.open``: a drop-in file object whose writes are journaled.

For an ``on-write`` entry every ``write``/``writelines``/``truncate`` is sent
to the daemon's journal and acknowledged *before* the bytes reach the file,
and ``close`` records whether the close succeeded. For an ``on-close`` entry
or an unprotected file it is the built-in ``open``; the close triggers a
version as usual. If the daemon cannot be reached, the application's own
write still happens and the library reports that it was not journaled:
``on_unjournaled="warn"`` (default) warns once per file, ``"raise"`` raises
``NotJournaled`` after the write was made.

For an entry whose recovery mode is ``auto`` (either backup mode), an I/O
error (EIO and its kin) on read, write, truncate or close is reported to the
daemon, which heals the file; the call is then retried on the healed file.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import warnings
from collections.abc import Callable, Iterable
from typing import IO, Any, TypeVar

from .client import Client, WriteStream
from .errors import DaemonUnavailable, FiletwinError, NotFound
from .heal import IO_ERRNOS

T = TypeVar("T")


class NotJournaled(DaemonUnavailable):
    """The write happened, but the daemon could not journal it."""


class JournalWarning(UserWarning):
    """Writes to a protected file were made without being journaled."""


class JournaledFile(io.RawIOBase):
    """An unbuffered binary file whose changes are journaled first."""

    def __init__(
        self,
        path: str,
        mode: str,
        stream: WriteStream | None,
        on_unjournaled: str,
        *,
        client: Client | None = None,
        journaled: bool = True,
    ) -> None:
        super().__init__()
        self.name = path
        self._mode = mode
        self._append = "a" in mode
        self._client = client
        self._journaled = journaled
        self._stream = stream
        self._on_unjournaled = on_unjournaled
        self._warned = False
        self._pending_error: NotJournaled | None = None
        if "w" in mode:
            # Opening truncates the file: that is a change like any write, and
            # it is journaled before it happens (else the journal would replay
            # the new bytes over the old tail, content that never existed).
            # "x" creates an empty file, "a" and "r+" change nothing at open.
            self._journal("truncate", 0)
        self._raw = io.FileIO(path, mode.replace("b", "").replace("t", ""))

    # what is journaled -------------------------------------------------
    def _journal(self, kind: str, offset: int = 0, payload: bytes = b"") -> None:
        if not self._journaled:
            return
        if self._stream is None:
            self._unjournaled(f"the daemon was not reachable when {self.name} was opened")
            return
        try:
            self._stream.send(kind, offset, payload)
        except DaemonUnavailable as e:
            self._stream.close()
            self._stream = None
            self._unjournaled(str(e))

    def _unjournaled(self, why: str) -> None:
        message = f"a change to {self.name} was not journaled: {why}"
        if self._on_unjournaled == "raise":
            self._pending_error = NotJournaled(message)
        elif not self._warned:
            warnings.warn(message, JournalWarning, stacklevel=4)
            self._warned = True

    # healing: an I/O error is reported, the file healed and the call retried --
    def _healed(self, err: OSError) -> bool:
        """Report ``err``; True if the daemon healed the file (then it is reopened)."""
        if err.errno not in IO_ERRNOS or self._client is None:
            return False
        try:
            self._client.request_recovery(
                self.name, reason=f"{err.strerror} met by filetwin.open", trigger="auto"
            )
        except FiletwinError:
            return False  # not an auto entry, no daemon, or the heal failed: the error stands
        position = 0 if self._raw.closed else self._raw.tell()
        # Reopen the healed file in the same way, without truncating it again.
        writes = any(c in self._mode for c in "wx+")
        reopen = "ab" if self._append else ("r+b" if writes else "rb")
        with contextlib.suppress(OSError):
            self._raw.close()
        self._raw = io.FileIO(self.name, reopen.replace("b", ""))
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
        self._journal("write", offset, data)
        start = self._raw.tell()

        def write_all() -> None:
            if not self._append:
                self._raw.seek(start)
            view = memoryview(data)
            while view:
                n = self._raw.write(view)
                if n is None:
                    raise BlockingIOError("the file is non-blocking")
                view = view[n:]

        self._retry(write_all)
        self._raise_pending()
        return len(data)

    def writelines(self, lines: Iterable[Any]) -> None:
        for line in lines:
            self.write(line)

    def truncate(self, size: int | None = None) -> int:
        if size is None:
            size = self._raw.tell()
        self._journal("truncate", size)
        result = self._retry(lambda: self._raw.truncate(size))
        self._raise_pending()
        return result

    def mark(self, name: str) -> None:
        """Name this moment in the journal (restore it with ``--at mark:NAME``)."""
        self._journal("mark", 0, name.encode())
        self._raise_pending()

    def close(self) -> None:
        if self.closed:
            return
        failure: OSError | None = None
        try:
            try:
                self._raw.close()
            except OSError as e:
                failure = e
            if self._stream is not None:
                # A failed close may have lost writes; the journal has them.
                self._journal("close-ok" if failure is None else "close-failed")
                if self._stream is not None:
                    self._stream.close()
                    self._stream = None
            if failure is not None:
                if not self._healed(failure):
                    raise failure
                self._raw.close()  # the healed file, reopened by _healed
        finally:
            super().close()
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
        if not self._raw.closed:
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

    Text modes wrap the journaled file with ``write_through``, so each
    ``write`` still reaches the journal before it returns.
    """
    if on_unjournaled not in ("warn", "raise"):
        raise ValueError("on_unjournaled must be 'warn' or 'raise'")
    abspath = os.path.abspath(os.fspath(path))
    writing = any(c in mode for c in "wax+")
    client = client or Client()
    stream: WriteStream | None = None
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
    if entry is None or (entry["backup_mode"] == "on-close" and entry["recovery_mode"] != "auto"):
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
    )
    if "b" in mode:
        return raw  # type: ignore[return-value]
    return io.TextIOWrapper(
        raw,
        encoding=encoding,
        errors=errors,
        newline=newline,
        write_through=True,
    )
