"""The interceptor's open files: one ``Handle`` per FUSE open, and what the
handles of one protected file share (``Shared``: their overlay of writes).

A heal rebuilds a file from its last version; the writes the programs made
through their open handles since (an ``Overlay``, bounded) are kept here and
re-applied to the healed file, so that no acknowledged write is rolled back.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

from ..client import WriteStream
from ..overlay import Overlay

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR


@dataclass
class Shared:
    """What the open handles of one protected file share: the order of their
    writes and the writes themselves since the first of them was opened (the
    overlay), so that a heal, which rebuilds the file from its last version,
    rolls back none of them: they are re-applied to the healed file."""

    #: held while a write reaches SOURCE and while a heal's result is put in place
    lock: threading.RLock = field(default_factory=threading.RLock)
    #: serialises heals of the file (FUSE threads may meet the same EIO at once)
    heal_lock: threading.Lock = field(default_factory=threading.Lock)
    #: the writes and truncates made through the handles, in order; past its
    #: bound a heal that would roll them back fails the call with EIO instead
    overlay: Overlay = field(default_factory=Overlay)
    opens: int = 0


@dataclass
class Handle:
    fd: int
    #: the entry's path (the key of the daemon's table): SOURCE/rel, or DIR/rel in place
    real: str
    #: the FUSE path, relative to SOURCE's descriptor
    rel: str
    flags: int
    entry: dict[str, Any] | None
    stream: WriteStream | None = None
    size_at_open: int = 0
    #: opened by the daemon itself through an in-place mount: passed straight through
    raw: bool = False
    #: shared with the file's other handles (None: raw, or not protected at open)
    shared: Shared | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: serialises heals of this handle when it has no ``shared``
    heal_lock: threading.Lock = field(default_factory=threading.Lock)
    #: something was written through this handle
    wrote: bool = False
    #: descriptors of the damaged file, replaced by a heal; closed at release,
    #: never before, so that another thread's pread on one cannot hit a reused fd
    retired: list[int] = field(default_factory=list)
    #: a close already failed and was recorded (journal record or event)
    close_failed: bool = False

    @property
    def writable(self) -> bool:
        return bool(self.flags & WRITE_FLAGS)
