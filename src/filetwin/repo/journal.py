"""The on-write journal: every write to a protected file, in order, so it can be rebuilt at any seq.

On disk (one directory per entry) a journal is a run of append-only segment files
named ``{first_seq:020d}.seg``.  A segment is a header, then records:

* header: ``b"FTJ1"``, version u16, a random 16-byte salt, first_seq u64,
  created_ns u64, then 16 bytes of BLAKE3 over those fields;
* record: magic ``b"\\xa5J"``, seq u64, time_ns u64, kind u8, offset u64,
  length u32, 16 bytes of BLAKE3 over (salt, those fields, payload), payload.

Kinds: ``write`` (payload written at offset), ``truncate`` (offset = new size),
``close-ok``, ``close-failed``, ``mark`` (payload = UTF-8 name).  Sequence
numbers start at 1 and are consecutive across segments.  Because the checksum is
keyed by the segment's salt, stale bytes of another segment (same seqs, valid
structure) are never taken for records.

Reading stops at the first record whose magic, length, checksum, salt or seq is
wrong and never guesses past it.  The one way forward is a later segment whose
(checksummed) header starts exactly at the next expected seq: only a writer that
read the same journal and resumed after its last valid record makes one, so no
seq is skipped; the tail left behind is reported in ``abandoned``.

A gap is the other way forward, taken only when asked (``allow_gaps``): a valid
segment that starts *after* the next expected seq.  A writer makes one when the
records it found end before what a checkpoint already covers (a damaged
journal): it never reuses a seq a version stands for.  The seqs skipped are
listed in ``gaps``; replay never crosses one (see moments.resolve).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import struct
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import blake3

from filetwin.errors import RepositoryError, UsageError
from filetwin.repo.durable import TEMP_PREFIX, fsync_dir, os_error

MAGIC = b"FTJ1"
VERSION = 1
RECORD_MAGIC = b"\xa5J"
SUM_SIZE = 16
_HEADER = struct.Struct("<4sH16sQQ")  # magic, version, salt, first_seq, created_ns
HEADER_SIZE = _HEADER.size + SUM_SIZE
_RECORD = struct.Struct("<2sQQBQI")  # magic, seq, time_ns, kind, offset, length
RECORD_OVERHEAD = _RECORD.size + SUM_SIZE
#: Largest payload of one record; append_write splits bigger writes.
MAX_PAYLOAD = 16 << 20
KINDS = {1: "write", 2: "truncate", 3: "close-ok", 4: "close-failed", 5: "mark"}
_CODES = {name: code for code, name in KINDS.items()}
_SEGMENT = re.compile(r"\d{20}\.seg")
_U64 = 1 << 64


@dataclass(frozen=True, slots=True)
class Record:
    """One journal record.  ``time`` is unix seconds; ``data`` is empty but for write and mark."""

    seq: int
    time: float
    kind: str
    offset: int
    length: int
    data: bytes


@dataclass(frozen=True, slots=True)
class TornTail:
    """Where reading of a segment stopped: byte ``offset`` in ``segment``, and why.

    Reasons: short read, bad magic, bad length, bad checksum, bad salt (the checksum
    matches another segment's salt: stale bytes), bad sequence, bad kind, bad version.
    """

    segment: Path
    offset: int
    reason: str


@dataclass
class JournalReplay:
    """Result of read_journal: the valid records in order and where reading stopped."""

    records: list[Record]
    torn: TornTail | None  # None: the journal ended cleanly
    abandoned: list[TornTail] = field(default_factory=list)  # tails a writer resumed after
    next_seq: int | None = None  # seq the next record must carry (None: no valid segment)
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (first, last) seqs missing


def _checksum(salt: bytes, head: bytes, payload: bytes) -> bytes:
    h = blake3.blake3(salt)
    h.update(head)
    h.update(payload)
    return h.digest(SUM_SIZE)


def _parse_header(raw: bytes) -> tuple[bytes, int] | str:
    """(salt, first_seq) of a segment header, or the reason it is not one."""
    if len(raw) < HEADER_SIZE:
        return "short read"
    magic, version, salt, first_seq, _created = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        return "bad magic"
    if blake3.blake3(raw[: _HEADER.size]).digest(SUM_SIZE) != raw[_HEADER.size : HEADER_SIZE]:
        return "bad checksum"
    return "bad version" if version != VERSION else (salt, first_seq)


def list_segments(directory: Path) -> list[Path]:
    """Segment files of the journal in ``directory``, oldest first ([] when it does not exist)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise os_error(f"cannot list journal {directory}", e) from e
    return [Path(directory) / n for n in sorted(n for n in names if _SEGMENT.fullmatch(n))]


def segments_needed(directory: Path, from_seq: int) -> list[Path]:
    """Segments that may hold records with seq >= ``from_seq``, oldest first (by name)."""
    segs = list_segments(directory)
    start = 0
    for i, p in enumerate(segs):
        if int(p.name[:20]) <= from_seq:
            start = i
    return segs[start:]


def drop_segments_before(directory: Path, seq: int) -> list[Path]:
    """Delete the segments whose records all have seq < ``seq`` (never the newest); durable.

    Returns the removed paths.  Use after a checkpoint made records below ``seq`` useless.
    """
    segs = list_segments(directory)
    doomed = [p for p, nxt in zip(segs, segs[1:], strict=False) if int(nxt.name[:20]) <= seq]
    for p in doomed:
        try:
            p.unlink()
        except OSError as e:
            raise os_error(f"cannot remove journal segment {p}", e) from e
    if doomed:
        fsync_dir(Path(directory))
    return doomed


class JournalScan:
    """Iterate over the valid records of a journal without holding their payloads.

    Once the iteration ends, ``torn``, ``abandoned`` and ``next_seq`` describe it as in
    JournalReplay.  Records with seq < ``start_seq`` are checked but not yielded; when
    ``start_seq`` > 0 and the oldest segment starts after it, reading stops (bad sequence).
    Raises RepositoryError only when a segment cannot be opened or read (I/O error).  A
    record being appended while a journal is read shows up as a torn tail (short read).

    With ``allow_gaps``, a valid segment starting after the next expected seq is read
    on, the seqs skipped listed in ``gaps`` (and a torn tail before it in ``abandoned``);
    without, reading stops there (bad sequence), so a replay never crosses a gap.
    """

    def __init__(self, directory: Path, start_seq: int = 0, allow_gaps: bool = False) -> None:
        self.directory = Path(directory)
        self.start_seq = start_seq
        self.allow_gaps = allow_gaps
        self.torn: TornTail | None = None
        self.abandoned: list[TornTail] = []
        self.next_seq: int | None = None
        self.gaps: list[tuple[int, int]] = []

    def __iter__(self) -> Iterator[Record]:
        pending: TornTail | None = None  # a segment's bad tail; forgiven only by a resume
        for path in segments_needed(self.directory, self.start_seq):
            try:
                with open(path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    hdr = _parse_header(f.read(HEADER_SIZE))
                    expected = self.next_seq if self.next_seq is not None else self.start_seq
                    if isinstance(hdr, str):
                        stop: TornTail | None = TornTail(path, 0, hdr)
                    elif (
                        self.allow_gaps
                        and hdr[1] == int(path.name[:20])
                        and expected > 0
                        and hdr[1] > expected
                    ):
                        self.gaps.append((expected, hdr[1] - 1))
                        if pending is not None:
                            self.abandoned.append(pending)
                        self.next_seq = hdr[1]
                        pending = yield from self._records(f, path, size, hdr[0])
                        continue
                    elif hdr[1] != int(path.name[:20]) or (
                        hdr[1] != self.next_seq
                        if self.next_seq is not None
                        else 0 < self.start_seq < hdr[1]
                    ):
                        stop = TornTail(path, 0, "bad sequence")
                    else:
                        if pending is not None:
                            self.abandoned.append(pending)
                        self.next_seq = hdr[1]
                        pending = yield from self._records(f, path, size, hdr[0])
                        continue
            except OSError as e:
                raise os_error(f"cannot read journal segment {path}", e) from e
            self.torn = pending or stop
            return
        self.torn = pending

    def _records(
        self, f: BinaryIO, path: Path, size: int, salt: bytes
    ) -> Generator[Record, None, TornTail | None]:
        pos = HEADER_SIZE
        while pos < size:
            head = f.read(RECORD_OVERHEAD) if pos + RECORD_OVERHEAD <= size else b""
            if len(head) < RECORD_OVERHEAD:
                return TornTail(path, pos, "short read")
            magic, seq, time_ns, code, offset, length = _RECORD.unpack_from(head)
            if magic != RECORD_MAGIC:
                return TornTail(path, pos, "bad magic")
            if length > MAX_PAYLOAD:
                return TornTail(path, pos, "bad length")
            payload = f.read(length) if pos + RECORD_OVERHEAD + length <= size else b""
            if len(payload) < length:
                return TornTail(path, pos, "short read")
            fields, digest = head[: _RECORD.size], head[_RECORD.size :]
            if _checksum(salt, fields, payload) != digest:
                stale = any(_checksum(s, fields, payload) == digest for s in self._salts(path))
                return TornTail(path, pos, "bad salt" if stale else "bad checksum")
            if seq != self.next_seq:
                return TornTail(path, pos, "bad sequence")
            kind = KINDS.get(code)
            if kind is None or (length and kind not in ("write", "mark")):
                return TornTail(path, pos, "bad kind")
            pos += RECORD_OVERHEAD + length
            self.next_seq = seq + 1
            if seq >= self.start_seq:
                yield Record(seq, time_ns / 1e9, kind, offset, length, payload)
        return None

    def _salts(self, skip: Path) -> list[bytes]:
        """Salts of the other segments in the directory (to name stale bytes 'bad salt')."""
        out = []
        for p in list_segments(self.directory):
            with contextlib.suppress(OSError), open(p, "rb") as f:
                hdr = _parse_header(f.read(HEADER_SIZE))
                if p != skip and not isinstance(hdr, str):
                    out.append(hdr[0])
        return out


def iter_records(directory: Path, start_seq: int = 0, allow_gaps: bool = False) -> JournalScan:
    """Stream the valid records of a journal (see JournalScan); payloads are not kept."""
    return JournalScan(directory, start_seq, allow_gaps)


def read_journal(directory: Path, start_seq: int = 0, allow_gaps: bool = False) -> JournalReplay:
    """All valid records with seq >= ``start_seq``, in order, and where/why reading stopped."""
    scan = JournalScan(directory, start_seq, allow_gaps)
    records = list(scan)
    return JournalReplay(records, scan.torn, scan.abandoned, scan.next_seq, scan.gaps)


def _upto(records: Iterable[Record], upto_seq: int | None) -> Iterator[Record]:
    for r in records:
        if upto_seq is not None and r.seq > upto_seq:
            return
        yield r


def replay_onto(base: bytes, records: Iterable[Record], upto_seq: int | None = None) -> bytes:
    """``base`` with the records (seq <= ``upto_seq``) applied: what the file held then.

    A write past the end fills the gap with zeros; truncate shrinks or zero-extends.
    """
    buf = bytearray(base)
    for r in _upto(records, upto_seq):
        if r.kind == "write" and r.data:
            if r.offset > len(buf):
                buf.extend(bytes(r.offset - len(buf)))
            buf[r.offset : r.offset + len(r.data)] = r.data
        elif r.kind == "truncate":
            if r.offset < len(buf):
                del buf[r.offset :]
            else:
                buf.extend(bytes(r.offset - len(buf)))
    return bytes(buf)


def replay_into_file(fd: int, records: Iterable[Record], upto_seq: int | None = None) -> int | None:
    """Apply the records (seq <= ``upto_seq``) to the open file ``fd`` with pwrite/ftruncate.

    Returns the last seq applied (None if none).  The caller syncs ``fd`` if it must last.
    """
    last = None
    try:
        for r in _upto(records, upto_seq):
            if r.kind == "write":
                view, off = memoryview(r.data), r.offset
                while view:
                    n = os.pwrite(fd, view, off)
                    view, off = view[n:], off + n
            elif r.kind == "truncate":
                os.ftruncate(fd, r.offset)
            last = r.seq
    except OSError as e:
        raise os_error("cannot replay journal into file", e) from e
    return last


_fdatasync = getattr(os, "fdatasync", os.fsync)


def _ns(t: float) -> int:
    return max(0, round(t * 1e9)) % _U64


class JournalWriter:
    """Appends records to the journal in ``directory`` (created if missing).  Thread-safe.

    ``sync="always"``: each append is fdatasync'ed before it returns (durable_seq == its seq).
    ``sync="batch"``: appends reach the OS at once (they survive a process crash) but are
    made durable only by sync(), rotate(), close() or flush_if_due(), which the caller's
    loop must call at least every ``batch_window_s`` (see flush_deadline).  The caller
    acknowledges a write only once ``durable_seq >= seq``, or knowingly accepts the window.

    A failed write or fdatasync raises RepositoryError and the writer refuses every later
    append: it is never retried into a success.  Reopen the journal to go on.  With
    ``sync="always"`` no record after ``durable_seq`` was acknowledged, so a failure cuts
    the segment back to the last durable record: a record the caller was told failed is
    never replayed.  With ``"batch"`` the records since the last sync were acknowledged
    (they reached the kernel) and stay; they are just not known to be durable.

    Opening reads the whole journal (across gaps) and starts a fresh segment right after
    its last valid record, or after ``floor_seq`` if that is later: ``floor_seq`` is the
    last seq a version already stands for, and a seq is never given to two records.
    Files are never rewritten (but for the cut-back above): a torn tail stays where it
    is (reported later as ``abandoned``); a segment with a damaged header, and every
    segment after it, is renamed aside to ``<name>.aside-<ns>``.
    """

    def __init__(
        self,
        directory: Path,
        sync: Literal["always", "batch"] = "always",
        batch_window_s: float = 0.1,
        clock: Callable[[], float] = time.time,
        max_segment_bytes: int = 64 << 20,
        floor_seq: int = 0,
    ) -> None:
        if sync not in ("always", "batch"):
            raise UsageError(f"journal sync must be 'always' or 'batch', not {sync!r}")
        if not batch_window_s >= 0:
            raise UsageError(f"journal batch window must be >= 0 s, not {batch_window_s}")
        if max_segment_bytes < HEADER_SIZE + RECORD_OVERHEAD:
            raise UsageError(f"journal segments must hold a record, not {max_segment_bytes} B")
        self.directory = Path(directory)
        self.sync_mode = sync
        self.batch_window_s = batch_window_s
        self._clock = clock
        self._max = max_segment_bytes
        self._lock = threading.Lock()
        self._fd = -1
        self._failed: str | None = None
        self._closed = False
        self._pending_since: float | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for n in os.listdir(self.directory):
                if n.startswith(TEMP_PREFIX):
                    os.unlink(self.directory / n)
        except OSError as e:
            raise os_error(f"cannot open journal {self.directory}", e) from e
        scan = JournalScan(self.directory, allow_gaps=True)
        for _ in scan:
            pass
        #: where the journal found at open was torn (None: it ended cleanly)
        self.torn_at_open: TornTail | None = scan.torn
        segs = list_segments(self.directory)
        found = scan.next_seq or (int(segs[0].name[:20]) if segs else 1)
        first = max(found, floor_seq + 1)
        #: stretches of missing records found at open, across which replay never goes
        self.gaps_at_open: list[tuple[int, int]] = scan.gaps
        #: seqs skipped at open because a version already covers them ((first, last) or None)
        self.skipped_at_open: tuple[int, int] | None = (found, first - 1) if first > found else None
        # A torn segment that gave records stays; one that gave none, and all after it, go aside.
        i = len(segs) if scan.torn is None else segs.index(scan.torn.segment)
        i += scan.torn is not None and scan.torn.offset > HEADER_SIZE
        try:
            for p in segs[i:]:
                os.rename(p, p.with_name(f"{p.name}.aside-{time.time_ns()}"))
            if i:  # what an earlier process wrote may still sit in the page cache only
                fd = os.open(segs[i - 1], os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as e:
            raise os_error(f"cannot recover journal {self.directory}", e) from e
        if segs[i:]:
            fsync_dir(self.directory)
        self._next = self._seg_first = first
        self._durable = first - 1
        self._durable_pos = HEADER_SIZE
        try:
            self._new_segment()
        except RepositoryError:
            self.close()
            raise

    @property
    def failure(self) -> str | None:
        """Why the writer refuses appends (None: it does not)."""
        return self._failed

    @property
    def next_seq(self) -> int:
        """Seq the next append will get."""
        return self._next

    @property
    def durable_seq(self) -> int:
        """Highest seq known to be on disk (every lower seq is too); first seq - 1 if none."""
        return self._durable

    @property
    def flush_deadline(self) -> float | None:
        """Clock time by which flush_if_due() must run (None: nothing waits for a sync)."""
        since = self._pending_since
        return None if since is None else since + self.batch_window_s

    @property
    def segment(self) -> Path:
        """The segment being appended to."""
        return self.directory / f"{self._seg_first:020d}.seg"

    def append_write(self, offset: int, data: bytes) -> int:
        """Record ``data`` written at ``offset``; returns its seq (the last one if split)."""
        if len(data) <= MAX_PAYLOAD:
            return self._append("write", offset, data)
        view = memoryview(data)
        seq = self._append("write", offset, bytes(view[:MAX_PAYLOAD]))
        for start in range(MAX_PAYLOAD, len(view), MAX_PAYLOAD):
            seq = self._append("write", offset + start, bytes(view[start : start + MAX_PAYLOAD]))
        return seq

    def append_truncate(self, length: int) -> int:
        """Record the file truncated (or extended) to ``length`` bytes; returns the seq."""
        return self._append("truncate", length)

    def append_close(self, ok: bool) -> int:
        """Record the file closed, successfully (``ok``) or with an error; returns the seq."""
        return self._append("close-ok" if ok else "close-failed", 0)

    def append_many(self, records: Iterable[tuple[str, int, bytes]]) -> list[int]:
        """Append (kind, offset, payload) records as one batch; return their seqs.

        No other append comes between them (one lock hold, one sync in ``always``
        mode).  Writes over MAX_PAYLOAD are split; their last seq is returned.
        """
        items = list(records)
        for kind, offset, payload in items:
            if kind not in _CODES:
                raise UsageError(f"unknown journal record kind {kind!r}")
            if not 0 <= offset < _U64:
                raise UsageError(f"journal offset out of range: {offset}")
            if kind != "write" and (kind != "mark" or len(payload) > MAX_PAYLOAD) and payload:
                raise UsageError(f"a {kind} record carries no payload of {len(payload)} bytes")
        with self._lock:
            self._check()
            seqs = []
            try:
                for kind, offset, payload in items:
                    if kind == "write" and len(payload) > MAX_PAYLOAD:
                        view = memoryview(payload)
                        for start in range(0, len(view), MAX_PAYLOAD):
                            piece = bytes(view[start : start + MAX_PAYLOAD])
                            seq = self._append_locked("write", offset + start, piece)
                    else:
                        seq = self._append_locked(kind, offset, payload)
                    seqs.append(seq)
                if self.sync_mode == "always":
                    self._sync()
            except RepositoryError:
                self._cut_back()
                raise
            return seqs

    def append_mark(self, name: str) -> int:
        """Record a named point (a checkpoint, a user mark); returns the seq."""
        data = name.encode("utf-8")
        if len(data) > MAX_PAYLOAD:
            raise UsageError(f"journal mark name is too long ({len(data)} bytes)")
        return self._append("mark", 0, data)

    def _check(self) -> None:
        if self._failed is not None:
            raise RepositoryError(f"journal {self.directory} is unusable: {self._failed}")
        if self._closed:
            raise RepositoryError(f"journal {self.directory} is closed")

    def _fail(self, message: str, err: OSError) -> RepositoryError:
        self._failed = message
        return os_error(f"{message} in journal {self.directory}", err)

    def _append(self, kind: str, offset: int, payload: bytes = b"") -> int:
        if not 0 <= offset < _U64:
            raise UsageError(f"journal offset out of range: {offset}")
        with self._lock:
            self._check()
            try:
                seq = self._append_locked(kind, offset, payload)
                if self.sync_mode == "always":
                    self._sync()
            except RepositoryError:
                self._cut_back()
                raise
            return seq

    def _append_locked(self, kind: str, offset: int, payload: bytes) -> int:
        size = RECORD_OVERHEAD + len(payload)
        if self._pos + size > self._max and self._next > self._seg_first:
            self._rotate()
        now = self._clock()
        seq = self._next
        fields = _RECORD.pack(RECORD_MAGIC, seq, _ns(now), _CODES[kind], offset, len(payload))
        view = memoryview(b"".join((fields, _checksum(self._salt, fields, payload), payload)))
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as e:
            raise self._fail("write failed", e) from e
        self._pos += size
        self._next = seq + 1
        if self._pending_since is None:
            self._pending_since = now
        return seq

    def _cut_back(self) -> None:
        """After a failed append in ``always`` mode: remove what follows the last durable
        record (none of it was acknowledged), so it is never replayed.  Best effort: the
        writer is failed either way."""
        if self.sync_mode != "always" or self._fd < 0:
            return
        try:
            os.ftruncate(self._fd, self._durable_pos)
            _fdatasync(self._fd)
        except OSError as e:
            self._failed = f"{self._failed}; cutting back the unacknowledged records failed: {e}"

    def _sync(self) -> None:
        if self._durable == self._next - 1:
            return
        try:
            _fdatasync(self._fd)
        except OSError as e:
            raise self._fail("fdatasync failed", e) from e
        self._durable = self._next - 1
        self._durable_pos = self._pos
        self._pending_since = None

    def sync(self) -> int:
        """Make every append so far durable now; returns durable_seq."""
        with self._lock:
            self._check()
            self._sync()
            return self._durable

    def flush_if_due(self) -> bool:
        """Sync if the oldest unsynced append is ``batch_window_s`` old; True if it synced."""
        with self._lock:
            self._check()
            if self._pending_since is None:
                return False
            now = self._clock()
            if now - self._pending_since < self.batch_window_s and now >= self._pending_since:
                return False
            self._sync()
            return True

    def rotate(self) -> int:
        """Close the current segment (synced) and start a new one; returns its first seq.

        A segment with no record yet is kept as is.
        """
        with self._lock:
            self._check()
            if self._next > self._seg_first:
                self._rotate()
            return self._seg_first

    def _rotate(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as e:
            raise self._fail("fsync failed", e) from e
        self._durable = self._next - 1
        self._pending_since = None
        with contextlib.suppress(OSError):  # the data is on disk already
            os.close(self._fd)
        self._fd = -1
        self._seg_first = self._next
        self._new_segment()

    def _new_segment(self) -> None:
        """Create the segment for seq ``_next``: temp, fsync, rename, fsync dir."""
        salt = secrets.token_bytes(16)
        head = _HEADER.pack(MAGIC, VERSION, salt, self._next, _ns(self._clock()))
        head += blake3.blake3(head).digest(SUM_SIZE)
        tmp = self.directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = -1
        try:
            fd = os.open(tmp, flags, 0o600)
            view = memoryview(head)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.rename(tmp, self.segment)
        except OSError as e:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise self._fail("cannot create segment", e) from e
        self._fd, self._salt, self._pos = fd, salt, HEADER_SIZE
        self._durable_pos = HEADER_SIZE
        try:
            fsync_dir(self.directory)
        except RepositoryError as e:
            self._failed = str(e)
            raise

    def close(self) -> None:
        """Sync (unless the writer failed) and close.  Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._failed is None and self._fd >= 0:
                    self._sync()
            finally:
                if self._fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(self._fd)
                    self._fd = -1

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
