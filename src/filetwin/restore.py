"""Rebuild a version into place, bit for bit, without following planted links."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import blake3

from .errors import UnsafePath, UsageError
from .repo import Manifest, Repository
from .repo.moments import Moment, has_journal, rebuild_into, resolve
from .safeio import (
    FileMeta,
    open_dir_nofollow,
    open_existing_nofollow,
    open_protected,
    open_regular_at,
    punch_zero_blocks,
    replace_in_dir,
    write_sparse,
)
from .timefmt import iso


def keep_current_aside(
    repo: Repository,
    path: str,
    manifest: Manifest | None,
    at: tuple[int, str] | None = None,
    replaced_by: str = "",
) -> str | None:
    """Store the content at ``path`` as a version of cause ``restore`` unless it equals
    ``manifest``. Returns the id of the version kept, or None. ``replaced_by``
    names the version about to be put back (Manifest.replaced_by).

    The file is opened no-follow: as ``at`` = (directory fd, name) when given,
    else by a no-follow walk of ``path``."""
    fd = open_existing_nofollow(path) if at is None else open_regular_at(*at)
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
        kept = repo.store_file(path, "restore", fd=fd, replaced_by=replaced_by)
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
    target = path if to is None else _destination(to)
    directory, name = os.path.split(target)
    if not name:
        raise UnsafePath(f"{target} does not name a file")
    # One no-follow walk: the comparison with the entry, the keep-aside and
    # the write all happen in this directory, whatever is swapped in meanwhile.
    dfd = open_dir_nofollow(directory)
    try:
        if not in_place and _same_file(dfd, name, path):
            in_place = True  # --to names the entry's own file: keep its content too
        kept = None
        if in_place:
            base = None if moment.replays else manifest
            # The kept version names the one put back, which becomes the newest
            # state with no echo version. Not for an entry with a journal: its
            # newest state is a version plus the journal since, which a
            # restored old version cannot stand for.
            marks = not moment.replays and not has_journal(jdir)
            kept = keep_current_aside(
                repo, path, base, at=(dfd, name), replaced_by=manifest.id if marks else ""
            )
        if moment.replays:
            mtime_ns = int(moment.time * 1e9)
            meta = FileMeta(manifest.mode, manifest.uid, manifest.gid, mtime_ns)

            def fill(fd: int) -> int:
                size = rebuild_into(repo, moment, jdir, fd)
                punch_zero_blocks(fd, size)  # the base was written with its zeros
                return size

        else:
            meta = FileMeta(manifest.mode, manifest.uid, manifest.gid, manifest.mtime_ns)

            def fill(fd: int) -> int:
                # read_version checks the whole file's hash before the rename can happen
                return write_sparse(fd, repo.read_version(manifest))

        size = replace_in_dir(dfd, name, target, fill, meta, keep_links=in_place)
    finally:
        os.close(dfd)
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


def _same_file(dfd: int, name: str, path: str) -> bool:
    """Whether ``name`` in the directory ``dfd`` is the inode of the entry
    ``path`` (both looked up without following symlinks), through any link."""
    try:
        fd = open_protected(path)
    except (FileNotFoundError, UnsafePath):
        return False
    try:
        live = os.fstat(fd)
    finally:
        os.close(fd)
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (live.st_dev, live.st_ino)
