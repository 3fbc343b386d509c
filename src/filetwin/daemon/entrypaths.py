"""Which paths may become entries, and how a user's path names an entry.

Paths arrive as ``str``; a byte that is not UTF-8 is carried as a lone
surrogate (Python's ``surrogateescape``: b"caf\\xe9" is "caf\\udce9"), the form
``os.fsdecode`` gives and every ``os`` call turns back into the same bytes.

Request input is checked by ``check_path`` before anything touches the disk:
a path longer than PATH_MAX or with a component longer than NAME_MAX is
refused at once (``os.path.realpath`` is quadratic in the number of
components and would hold the event loop for minutes on a 1 MB path). What
must touch the disk (``resolve_new_paths``, ``realpath``) is meant to run in a
thread: the API calls it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import os
import stat

from ..errors import Conflict, NotFound, UsageError
from ..table import Table

#: Linux limits, in bytes: a whole path including its terminating NUL, one name.
PATH_MAX = 4096
NAME_MAX = 255


def _show(raw: str, limit: int = 120) -> str:
    """A path fit for an error message: printable, and short even if the path is not."""
    text = repr(raw)[1:-1] if not raw.isprintable() else raw
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def check_path(raw: object, what: str = "path") -> str:
    """``raw`` if it is an absolute path the kernel could take; else UsageError.

    Pure: no system call. Refused, naming the problem: non-strings, the empty
    string, NUL bytes, relative paths, characters that are no file-name bytes,
    more than PATH_MAX (4096) bytes, a component of more than NAME_MAX (255).
    """
    if not isinstance(raw, str) or not raw:
        raise UsageError(f"not a {what}: {_show(repr(raw))}")
    if "\0" in raw:
        raise UsageError(f"{what} {_show(raw)} contains a NUL byte")
    try:
        encoded = os.fsencode(raw)
    except UnicodeEncodeError as e:
        raise UsageError(
            f"{what} {_show(raw)} holds a character that is no file-name byte ({e.reason})"
        ) from None
    if len(encoded) >= PATH_MAX:
        raise UsageError(
            f"{what} {_show(raw)} is {len(encoded)} bytes long; "
            f"the limit is PATH_MAX ({PATH_MAX} bytes with its terminating NUL)"
        )
    if not os.path.isabs(raw):
        prefix = "" if what == "path" else f"{what} "
        raise UsageError(f"{prefix}{_show(raw)} is not an absolute path")
    for name in encoded.split(b"/"):
        if len(name) > NAME_MAX:
            raise UsageError(
                f"{what} {_show(raw)} has a component of {len(name)} bytes; "
                f"the limit is NAME_MAX ({NAME_MAX} bytes)"
            )
    return raw


def resolve_new_paths(paths: object) -> tuple[list[str], list[str]]:
    """Check every path to protect on disk; return real paths and notes.

    Blocking (lstat, realpath, open): run it in a thread for request input.
    A symlink is resolved and its target protected (a note says so). Refused,
    naming the problem: malformed paths (``check_path``), missing paths,
    directories, devices and other non-regular files, unreadable files, paths
    given twice.
    """
    if not isinstance(paths, list) or not paths:
        raise UsageError("give at least one path to protect")
    resolved: list[str] = []
    notes: list[str] = []
    for raw in paths:
        check_path(raw)
        try:
            lst = os.lstat(raw)
        except FileNotFoundError:
            raise UsageError(f"{_show(raw)} does not exist") from None
        except OSError as e:
            raise UsageError(f"cannot look at {_show(raw)}: {e.strerror}") from e
        real = os.path.realpath(raw)
        if stat.S_ISLNK(lst.st_mode):
            try:
                os.stat(real)
            except OSError:
                raise UsageError(
                    f"{_show(raw)} is a symbolic link to {_show(real)}, which does not exist"
                ) from None
            notes.append(f"{raw} is a symbolic link: protecting its target {real}")
        try:
            st = os.stat(real)
        except OSError as e:
            raise UsageError(f"cannot look at {_show(raw)}: {e.strerror}") from e
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{_show(raw)} is a directory; filetwin protects regular files")
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(
                f"{_show(raw)} is not a regular file (a device, FIFO or socket cannot be protected)"
            )
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise UsageError(f"cannot read {_show(raw)}: {e.strerror}") from e
        os.close(fd)
        if real in resolved:
            raise UsageError(f"{_show(raw)} is given twice (as {_show(real)})")
        resolved.append(real)
    return resolved, notes


def validate_new_paths(paths: list[str], table: Table) -> tuple[list[str], list[str]]:
    """``resolve_new_paths``, then refuse entries that already exist.

    The table check runs in the caller's thread (the table's connection is the
    event loop's); the API resolves request input in a thread beforehand, so
    what reaches this is already bounded and resolved.
    """
    resolved, notes = resolve_new_paths(paths)
    for real in resolved:
        if table.get(real) is not None:
            raise Conflict(f"{real} is already protected (see `filetwin status {real}`)")
    return resolved, notes


def entry_path(raw: object, table: Table) -> str:
    """The entry a user's absolute path names: itself, else its resolved form.

    Blocking (realpath): for request input use ``entry_path_async``.
    """
    norm = os.path.normpath(check_path(raw))
    if table.get(norm) is not None:
        return norm
    real = os.path.realpath(norm)
    if table.get(real) is not None:
        return real
    raise NotFound(f"{_show(str(raw))} is not protected (no such entry; see `filetwin status`)")


async def entry_path_async(raw: object, table: Table) -> str:
    """``entry_path`` with the path resolved in a thread, the table read on the loop."""
    norm = os.path.normpath(check_path(raw))
    if table.get(norm) is not None:
        return norm
    real = await asyncio.to_thread(os.path.realpath, norm)
    if table.get(real) is not None:
        return real
    raise NotFound(f"{_show(str(raw))} is not protected (no such entry; see `filetwin status`)")
