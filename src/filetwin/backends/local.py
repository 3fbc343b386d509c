"""The local directory backend: each object is a file under ``root`` at its name's path."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from filetwin.backends.base import validate_name, validate_range
from filetwin.errors import ObjectNotFound, RepositoryError
from filetwin.repo.durable import TEMP_PREFIX, fsync_dir, os_error, write_atomic

# A name whose path runs into a file or a directory is simply "not an object".
_ABSENT = (errno.ENOENT, errno.ENOTDIR, errno.EISDIR)
# get opens with O_NOFOLLOW: a symlink standing at an object's path (ELOOP) is
# not an object either, as exists() says (it lstat()s).
_ABSENT_OPEN = (*_ABSENT, errno.ELOOP)
#: pread in pieces of at most this: one huge read() may return short anyway.
_READ_PIECE = 8 << 20


class LocalBackend:
    """Backend storing objects as files (mode 0600) in directories (mode 0700) under ``root``.

    ``put`` goes through durable.write_atomic, so an object is whole or absent
    even across a crash; directories it creates are fsynced into their parents.
    """

    #: a ranged ``get`` costs a pread, no round trip: packs are read chunk by chunk
    cheap_ranges = True

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise os_error(f"cannot create repository directory {self.root}", e) from e
        if not self.root.is_dir():
            raise RepositoryError(f"repository location {self.root} is not a directory")

    def __repr__(self) -> str:
        return f"LocalBackend({self.location!r})"

    def _path(self, name: str) -> Path:
        return self.root / validate_name(name)

    def _make_parents(self, path: Path) -> None:
        # Create missing directories top-down and fsync each new one into its
        # parent: otherwise a crash could lose the directory and the object in it.
        missing: list[Path] = []
        d = path.parent
        while d != self.root and not d.is_dir():
            missing.append(d)
            d = d.parent
        for d in reversed(missing):
            try:
                d.mkdir(mode=0o700)
            except FileExistsError:
                continue  # a concurrent put made it; it is that put's job to sync it
            except OSError as e:
                raise os_error(f"cannot create directory {d}", e) from e
            fsync_dir(d.parent)

    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name`` atomically and durably (replaces an existing object)."""
        path = self._path(name)
        self._make_parents(path)
        write_atomic(path, data, 0o600)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return the object's bytes in [offset, offset+length) clipped to its size.

        ObjectNotFound if absent (a symlink or a directory at its path is not an
        object: opened O_NOFOLLOW, checked to be a regular file).  UsageError
        for a negative offset or length.
        """
        path = self._path(name)
        validate_range(offset, length)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            if e.errno in _ABSENT_OPEN:
                raise ObjectNotFound(f"object {name} not found in {self.location}") from e
            raise os_error(f"cannot open object {name} in {self.location}", e) from e
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ObjectNotFound(f"object {name} not found in {self.location}")
            end = st.st_size if length is None else min(st.st_size, offset + length)
            pieces: list[bytes] = []
            pos = offset
            while pos < end:
                piece = os.pread(fd, min(end - pos, _READ_PIECE), pos)
                if not piece:
                    break  # the file shrank under us: return what exists
                pieces.append(piece)
                pos += len(piece)
            return b"".join(pieces)
        except OSError as e:
            raise os_error(f"cannot read object {name} in {self.location}", e) from e
        finally:
            os.close(fd)

    def exists(self, name: str) -> bool:
        """Whether a regular file stands at the object's path."""
        path = self._path(name)
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError as e:
            if e.errno in _ABSENT:
                return False
            raise os_error(f"cannot stat object {name} in {self.location}", e) from e
        return stat.S_ISREG(st.st_mode)

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield every object name starting with ``prefix`` (any order, never temp files)."""
        # Only walk the deepest directory the prefix pins down, e.g. "manifests/abc/"
        # walks root/manifests/abc; "chunks/a" walks root/chunks.
        base = prefix.rpartition("/")[0]
        if base:
            validate_name(base)
        start = self.root / base if base else self.root
        yield from (n for n in self._walk(start, base) if n.startswith(prefix))

    def _walk(self, directory: Path, rel: str) -> Iterator[str]:
        try:
            it = os.scandir(directory)
        except OSError as e:
            if e.errno in _ABSENT:
                return
            raise os_error(f"cannot list {directory}", e) from e
        with it:
            entries = list(it)
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                continue
            name = f"{rel}/{entry.name}" if rel else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    yield from self._walk(Path(entry.path), name)
                elif entry.is_file(follow_symlinks=False):
                    yield name
            except OSError as e:
                raise os_error(f"cannot list {entry.path}", e) from e

    def delete(self, name: str) -> None:
        """Remove the object durably; an absent name is not an error."""
        path = self._path(name)
        try:
            os.unlink(path)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return
            raise os_error(f"cannot delete object {name} in {self.location}", e) from e
        fsync_dir(path.parent)
