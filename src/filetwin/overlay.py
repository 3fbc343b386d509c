"""The changes made through one open file that no journal holds, kept for a heal.

A heal rebuilds a file from its newest state; the writes and truncates a
program made through its open file since (an on-close entry's, which no
journal holds) would be rolled back. ``filetwin.open`` and the interceptor
keep them here, bounded, and put them back on the healed file in order.
"""

from __future__ import annotations

import os

#: the most bytes of unjournaled changes one open file keeps for a heal (64 MiB)
OVERLAY_LIMIT = 64 << 20


class Overlay:
    """The changes made through one open file that no journal holds, in order.

    ``add_write``/``add_truncate`` are called once a change reached the file.
    ``apply(fd)`` makes them again on a healed file. Past ``limit`` bytes the
    changes are dropped and ``complete`` becomes False for good: a heal could
    then no longer put back every acknowledged change.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = OVERLAY_LIMIT if limit is None else limit
        self.complete = True
        self.size = 0
        #: (offset, data) for a write, (length, None) for a truncate
        self.changes: list[tuple[int, bytes | None]] = []

    def add_write(self, offset: int, data: bytes) -> None:
        if not self.complete:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.complete = False
            self.changes = []
            return
        self.changes.append((offset, data))

    def add_truncate(self, length: int) -> None:
        if not self.complete:
            return
        if length == 0:
            # What follows a truncate to nothing does not depend on what came before.
            self.changes = []
            self.size = 0
        self.changes.append((length, None))

    def apply(self, fd: int) -> None:
        """Make the changes again, in order, on ``fd`` (opened without O_APPEND)."""
        for offset, data in self.changes:
            if data is None:
                os.ftruncate(fd, offset)
                continue
            view = memoryview(data)
            while view:
                n = os.pwrite(fd, view, offset)
                view, offset = view[n:], offset + n
