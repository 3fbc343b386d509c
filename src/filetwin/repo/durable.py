"""Durable, atomic file replacement (the only way filetwin writes a file it must keep).

Contract (docs/architecture.md, Durability): write a temp file in the destination dir,
fsync it, rename it over the destination, fsync the directory.  Readers see
the old content or the new content, never a mix.  A failed fsync is never
retried: after a failed fsync the kernel may have dropped the dirty pages and
a second fsync can "succeed" without the data ever reaching the disk
(the PostgreSQL fsyncgate lesson), so the error is raised to the caller.
Modelled on borg's SaveFile.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from filetwin.errors import RepositoryError

#: Prefix of every temp file; listings skip names starting with it.
TEMP_PREFIX = ".tmp-"


def os_error(message: str, err: OSError) -> RepositoryError:
    """Build a RepositoryError for ``err`` that keeps its ``errno`` (EIO must stay visible)."""
    exc = RepositoryError(f"{message}: {err.strerror or err}")
    exc.errno = err.errno  # type: ignore[attr-defined]
    return exc


def fsync_dir(path: Path) -> None:
    """fsync the directory ``path`` so that entries created or renamed in it survive a crash.

    Raises RepositoryError (with ``.errno``) when the directory cannot be opened or synced.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise os_error(f"cannot open directory {path}", e) from e
    try:
        os.fsync(fd)
    except OSError as e:
        raise os_error(f"cannot sync directory {path}", e) from e
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably, with permission bits ``mode``.

    When this returns the new content is on disk and reachable under ``path``.
    On any error the temp file is removed, ``path`` keeps its old content (or
    stays absent), and RepositoryError is raised from the OSError.  The
    parent directory must already exist.
    """
    path = Path(path)
    parent = path.parent
    tmp = parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
    try:
        # O_EXCL: never write through a file (or symlink) someone planted at the temp name.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    except OSError as e:
        raise os_error(f"cannot write {path}", e) from e
    renamed = False
    try:
        try:
            os.fchmod(fd, mode)  # the umask must not change the mode we were asked for
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        renamed = True
    except OSError as e:
        raise os_error(f"cannot write {path}", e) from e
    finally:
        if not renamed:
            # Best effort: the original error is the one worth reporting.
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    fsync_dir(parent)
