"""Rebuild a version into place, bit for bit, without following planted links."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import blake3

from .errors import UnsafePath, UsageError
from .repo import Manifest, Repository
from .repo.moments import Moment, rebuild_into, resolve
from .safeio import (
    FileMeta,
    open_dir_nofollow,
    open_existing_nofollow,
    open_protected,
    punch_zero_blocks,
    replace_file,
    replace_file_with,
)
from .timefmt import iso


def keep_current_aside(repo: Repository, path: str, manifest: Manifest | None) -> str | None:
    """Store the content at ``path`` as a version of cause ``restore`` unless it equals
    ``manifest``. Returns the id of the version kept, or None."""
    fd = open_existing_nofollow(path)
    if fd is None:
        return None
    try:
        st = os.fstat(fd)
        if manifest is not None and st.st_size == manifest.size:
            hasher = blake3.blake3()
            while data := os.read(fd, 8 << 20):
                hasher.update(data)
            if hasher.hexdigest() == manifest.hash:
                return None
            os.lseek(fd, 0, os.SEEK_SET)
        kept = repo.store_file(path, "restore", fd=fd)
        return kept.id
    finally:
        os.close(fd)


def restore_version(
    repo: Repository,
    path: str,
    *,
    version: str | None = None,
    at: str | float | None = None,
    to: str | None = None,
    aside_dir: str | None = None,
    journal_dir: str | None = None,
) -> dict[str, Any]:
    """Restore entry ``path`` in place or to ``to``; return what was done.

    ``version`` names a stored version. Otherwise ``at`` (a time, ``seq:N`` or a
    mark) or, when absent, the newest state: for an entry with a journal that is
    a version plus the replay of its journal up to that moment.

    In place (and when ``to`` names the entry's own file, by device and inode,
    through any of its links) the current content is first kept as a version
    of cause ``restore``; a hard-linked file is written into its inode so every
    link sees the restored content. ``to`` is walked from ``/`` with no-follow
    directory fds: a symlink in any of its parents is refused (UnsafePath
    naming it); at the name itself a symlink is replaced (never written
    through) and a directory, FIFO, socket or device is refused. Holes of a
    sparse file are kept.
    """
    jdir = Path(journal_dir) if journal_dir else None
    if version is not None and at is not None:
        raise UsageError("give either a version or a time, not both")
    if version is not None:
        moment = Moment(repo.find_version(path, version), 0, 0.0, f"version {version}")
        moment = Moment(moment.base, moment.base.journal_seq, moment.base.time, moment.label)
    else:
        moment = resolve(repo, path, jdir, at)
    manifest = moment.base
    in_place = to is None
    target = path
    if to is not None:
        target = _destination(to)
        if _same_file(target, path):
            in_place, target = True, path
    kept = None
    if in_place:
        kept = keep_current_aside(repo, path, None if moment.replays else manifest)
    if moment.replays:
        mtime_ns = int(moment.time * 1e9)
        meta = FileMeta(manifest.mode, manifest.uid, manifest.gid, mtime_ns)

        def fill(fd: int) -> int:
            size = rebuild_into(repo, moment, jdir, fd)
            punch_zero_blocks(fd, size)  # the base was written with its zeros
            return size

        size = replace_file_with(target, fill, meta, keep_links=in_place)
    else:
        meta = FileMeta(manifest.mode, manifest.uid, manifest.gid, manifest.mtime_ns)
        # read_version checks the whole file's hash before the rename can happen
        size = replace_file(target, repo.read_version(manifest), meta, keep_links=in_place)
    return {
        "path": path,
        "target": target,
        "version": manifest.id,
        "version_time": iso(manifest.time),
        "journal_seq": moment.upto_seq,
        "moment": moment.label,
        "moment_time": iso(moment.time),
        "hash": manifest.hash if not moment.replays else None,
        "size": size,
        "kept_version": kept,
    }


def _destination(to: str) -> str:
    """``to`` as an absolute path, nothing resolved: symlinks in it are refused
    by the no-follow walk when it is written, never followed here."""
    return to if os.path.isabs(to) else os.path.join(os.getcwd(), to)


def _same_file(dest: str, path: str) -> bool:
    """Whether ``dest`` names the inode of the entry ``path`` (both looked up
    without following symlinks). UnsafePath if a parent of ``dest`` is a symlink."""
    try:
        fd = open_protected(path)
    except (FileNotFoundError, UnsafePath):
        return False
    try:
        live = os.fstat(fd)
    finally:
        os.close(fd)
    directory, name = os.path.split(dest)
    if not name:
        return False
    dfd = open_dir_nofollow(directory)
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    finally:
        os.close(dfd)
    return (st.st_dev, st.st_ino) == (live.st_dev, live.st_ino)
