"""The inotify capture source: one watch per directory that holds entries.

Watching the parent directory rather than the file catches both ways programs
save: writing in place (IN_MODIFY ... IN_CLOSE_WRITE on the name) and writing
a temp file renamed over the name (IN_MOVED_TO), and it survives the file
being replaced, deleted and created again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from inotify_simple import INotify
from inotify_simple import flags as F

from ..errors import FiletwinError

DIR_MASK = (
    F.CLOSE_WRITE
    | F.MODIFY
    | F.MOVED_TO
    | F.MOVED_FROM
    | F.CREATE
    | F.DELETE
    | F.DELETE_SELF
    | F.MOVE_SELF
    | F.ONLYDIR
)

#: events after which the file's content may differ from the last version
CHANGED = F.CLOSE_WRITE | F.MOVED_TO
#: events meaning a write is under way or happened
MODIFIED = F.MODIFY | F.CLOSE_WRITE | F.MOVED_TO | F.CREATE
#: events after which the file may be gone
GONE = F.DELETE | F.MOVED_FROM | F.DELETE_SELF | F.MOVE_SELF


class Watcher:
    """Calls ``callback(path, mask)`` for every event on a watched file's name.

    Events on the directory itself (deleted, moved) are passed to every
    watched file in it. Must be used from the event loop's thread.
    """

    def __init__(self, callback: Callable[[str, int], None]) -> None:
        self._callback = callback
        self._inotify = INotify(nonblocking=True)
        self._dir_of_wd: dict[int, str] = {}
        self._wd_of_dir: dict[str, int] = {}
        self._names: dict[str, set[str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self._inotify.fileno(), self.drain)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._inotify.fileno())
        self._inotify.close()

    def watch(self, path: str) -> None:
        directory, name = os.path.split(path)
        if directory not in self._wd_of_dir:
            try:
                wd = self._inotify.add_watch(directory, DIR_MASK)
            except OSError as e:
                raise FiletwinError(f"cannot watch {directory}: {e.strerror}") from e
            self._wd_of_dir[directory] = wd
            self._dir_of_wd[wd] = directory
            self._names[directory] = set()
        self._names[directory].add(name)

    def unwatch(self, path: str) -> None:
        directory, name = os.path.split(path)
        names = self._names.get(directory)
        if names is None:
            return
        names.discard(name)
        if not names:
            wd = self._wd_of_dir.pop(directory)
            del self._dir_of_wd[wd]
            del self._names[directory]
            # The directory may be gone already, and the watch with it.
            with contextlib.suppress(OSError):
                self._inotify.rm_watch(wd)

    def drain(self) -> None:
        """Read and dispatch every queued event now (also called before decisions)."""
        try:
            events = self._inotify.read(timeout=0)
        except BlockingIOError:
            return
        for event in events:
            directory = self._dir_of_wd.get(event.wd)
            if directory is None:
                continue
            if event.mask & F.IGNORED:
                # The kernel dropped the watch (directory deleted): forget it so
                # that a later watch() of a re-created directory adds a new one.
                names = self._names.pop(directory, set())
                self._wd_of_dir.pop(directory, None)
                self._dir_of_wd.pop(event.wd, None)
                for name in names:
                    self._callback(os.path.join(directory, name), F.DELETE_SELF)
                continue
            if event.mask & (F.DELETE_SELF | F.MOVE_SELF):
                for name in list(self._names.get(directory, ())):
                    self._callback(os.path.join(directory, name), event.mask)
                continue
            if event.name and event.name in self._names.get(directory, ()):
                self._callback(os.path.join(directory, event.name), event.mask)

    def watching(self, path: str) -> bool:
        """Whether events on ``path`` are delivered (False once its directory went away)."""
        directory, name = os.path.split(path)
        return name in self._names.get(directory, ())

    @property
    def directories(self) -> int:
        return len(self._wd_of_dir)
