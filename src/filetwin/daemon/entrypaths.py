"""Which paths may become entries, and how a user's path names an entry."""

from __future__ import annotations

import os
import stat

from ..errors import Conflict, NotFound, UsageError
from ..table import Table


def validate_new_paths(paths: list[str], table: Table) -> tuple[list[str], list[str]]:
    """Check every path before anything changes; return real paths and notes.

    A symlink is resolved and its target protected (a note says so). Refused,
    naming the problem: relative or missing paths, directories, devices and
    other non-regular files, unreadable files, paths given twice, entries that
    already exist.
    """
    if not isinstance(paths, list) or not paths:
        raise UsageError("give at least one path to protect")
    resolved: list[str] = []
    notes: list[str] = []
    for raw in paths:
        if not isinstance(raw, str) or not raw:
            raise UsageError(f"not a path: {raw!r}")
        if "\0" in raw:
            raise UsageError(f"path {raw!r} contains a NUL byte")
        if not os.path.isabs(raw):
            raise UsageError(f"{raw} is not an absolute path")
        try:
            lst = os.lstat(raw)
        except FileNotFoundError:
            raise UsageError(f"{raw} does not exist") from None
        except OSError as e:
            raise UsageError(f"cannot look at {raw}: {e.strerror}") from e
        real = os.path.realpath(raw)
        if stat.S_ISLNK(lst.st_mode):
            try:
                os.stat(real)
            except OSError:
                raise UsageError(
                    f"{raw} is a symbolic link to {real}, which does not exist"
                ) from None
            notes.append(f"{raw} is a symbolic link: protecting its target {real}")
        st = os.stat(real)
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{raw} is a directory; filetwin protects regular files")
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(
                f"{raw} is not a regular file (a device, FIFO or socket cannot be protected)"
            )
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise UsageError(f"cannot read {raw}: {e.strerror}") from e
        os.close(fd)
        if real in resolved:
            raise UsageError(f"{raw} is given twice (as {real})")
        if table.get(real) is not None:
            raise Conflict(f"{real} is already protected (see `filetwin status {real}`)")
        resolved.append(real)
    return resolved, notes


def entry_path(raw: str, table: Table) -> str:
    """The entry a user's absolute path names: itself, else its resolved form."""
    if not isinstance(raw, str) or not raw:
        raise UsageError(f"not a path: {raw!r}")
    if not os.path.isabs(raw):
        raise UsageError(f"{raw} is not an absolute path")
    norm = os.path.normpath(raw)
    if table.get(norm) is not None:
        return norm
    real = os.path.realpath(norm)
    if table.get(real) is not None:
        return real
    raise NotFound(f"{raw} is not protected (no such entry; see `filetwin status`)")
