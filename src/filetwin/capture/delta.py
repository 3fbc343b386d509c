"""Capture without the library: which byte ranges of a file changed.

The daemon keeps a shadow of each on-write file: the BLAKE3 digest of every
block. After a burst of writes by a program that does not use the API, the
file is read again, blocks whose digest differs become write records, and
a size change becomes a truncate record. This captures the file's state at
the end of each burst, not every write: exact per-write capture needs the
library, the API or the interceptor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import blake3

from ..repo.durable import write_atomic
from ..safeio import open_protected

BLOCK = 4096
DIGEST = 16
#: adjacent changed blocks are merged into writes of at most this size
MAX_RUN = 4 << 20


@dataclass
class Delta:
    old_size: int
    new_size: int
    writes: list[tuple[int, bytes]]
    #: the content changed but the size and mtime did not: silent corruption,
    #: not a write (the shadow is left as it was)
    suspect: bool = False

    @property
    def empty(self) -> bool:
        return self.old_size == self.new_size and not self.writes


def _digests(data: bytes) -> bytes:
    out = bytearray()
    view = memoryview(data)
    for off in range(0, len(data), BLOCK):
        out += blake3.blake3(view[off : off + BLOCK]).digest(DIGEST)
    return bytes(out)


def load_shadow(shadow: Path) -> tuple[int, int, bytes] | None:
    """(size, mtime_ns, block digests) of the shadow, None if there is none."""
    try:
        raw = shadow.read_bytes()
    except FileNotFoundError:
        return None
    if len(raw) < 16:
        return None
    return int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:16], "little"), raw[16:]


def save_shadow(shadow: Path, size: int, mtime_ns: int, digests: bytes) -> None:
    shadow.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(shadow, size.to_bytes(8, "little") + mtime_ns.to_bytes(8, "little") + digests)


def diff_file(path: str, shadow: Path, emit: bool = True) -> Delta:
    """Compare ``path`` with its shadow, update the shadow, return the changes.

    With ``emit`` False (or no shadow yet) only the shadow is refreshed and
    the delta is empty: the caller already knows the content (a first
    version, or writes reported through the API).

    Raises UnsafePath when a symlink or a non-regular file is at ``path`` or in
    one of its directories (the shadow is then left as it was).
    """
    # No-follow and fd-relative from "/": a symlink a user planted at the name (or in
    # a parent) is refused (UnsafePath), never read through, also as root.
    fd = open_protected(path)
    try:
        mtime_ns = os.fstat(fd).st_mtime_ns
        chunks = []
        while data := os.read(fd, 8 << 20):
            chunks.append(data)
    finally:
        os.close(fd)
    content = b"".join(chunks)
    digests = _digests(content)
    previous = load_shadow(shadow)
    if (
        emit
        and previous is not None
        and previous[2] != digests
        and previous[0] == len(content)
        and previous[1] == mtime_ns
    ):
        return Delta(len(content), len(content), [], suspect=True)
    save_shadow(shadow, len(content), mtime_ns, digests)
    if previous is None or not emit:
        return Delta(len(content), len(content), [])
    old_size, _old_mtime, old = previous
    writes: list[tuple[int, bytes]] = []
    run_start = -1
    nblocks = len(digests) // DIGEST
    for i in range(nblocks + 1):
        changed = (
            i < nblocks
            and digests[i * DIGEST : (i + 1) * DIGEST] != old[i * DIGEST : (i + 1) * DIGEST]
        )
        if changed and run_start < 0:
            run_start = i
        run_full = run_start >= 0 and (i - run_start) * BLOCK >= MAX_RUN
        if run_start >= 0 and (not changed or run_full):
            start, end = run_start * BLOCK, min(i * BLOCK, len(content))
            writes.append((start, content[start:end]))
            run_start = i if changed else -1
    return Delta(old_size, len(content), writes)
