"""Healing a damaged file: the one procedure every trigger uses.

1. rebuild the newest good state into a temp file beside the target (for an
   entry with a journal: its newest version plus the journal's replay, so no
   acknowledged write is lost; else its newest version), checking the hash;
2. keep the damaged file: copy it into the state directory's quarantine,
   block by block, so that unreadable 4 KiB sectors (EIO) become zeros listed
   in a ``.json`` beside the copy rather than stopping the copy — the damaged
   file is never simply deleted;
3. rename the rebuilt file over the target and fsync the directory (a file
   with more than one hard link is written into its inode instead, so every
   link is healed);
4. read the target back and compare its hash with the rebuilt one.

Every access to the protected file is no-follow and relative to directory
fds opened from ``/`` (safeio): a symlink planted at the name or swapped in
for a parent directory, even while the heal runs, is never read or written
through. All-zero blocks are left as holes.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import blake3

from .errors import RestoreError
from .repo import Repository
from .repo.moments import rebuild_into, resolve
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

BLOCK = 64 * 1024
#: the unit in which unreadable parts of a damaged file are found and listed
SECTOR = 4096
JOURNAL_SLACK_S = 2.0
#: errors that mean "the medium failed", not "you may not" or "it is gone"
IO_ERRNOS = frozenset(
    {
        errno.EIO,
        errno.ENXIO,
        errno.EREMOTEIO,
        errno.EBADMSG,
        errno.ENODATA,
        errno.EUCLEAN if hasattr(errno, "EUCLEAN") else errno.EIO,
    }
)


def _read_around(fd: int, offset: int, n: int, bad: list[list[int]]) -> bytes:
    """Read ``n`` bytes at ``offset`` a sector at a time; unreadable sectors become
    zeros and are added to ``bad`` (adjacent ones merged)."""
    parts = []
    for start in range(offset, offset + n, SECTOR):
        length = min(SECTOR, offset + n - start)
        try:
            data = os.pread(fd, length, start)
        except OSError as e:
            if e.errno not in IO_ERRNOS:
                raise
            data = b"\0" * length
            if bad and bad[-1][0] + bad[-1][1] == start:
                bad[-1][1] += length
            else:
                bad.append([start, length])
        parts.append(data)
        if len(data) < length:
            break  # the end of the file
    return b"".join(parts)


def quarantine(path: str, quarantine_dir: Path, dfd: int | None = None) -> dict[str, Any] | None:
    """Copy what can be read of ``path`` into the quarantine; None if nothing is there.

    The file is opened no-follow: by its name in the directory fd ``dfd`` when
    given (the one the heal then writes in), else by a no-follow walk of
    ``path``. All-zero blocks stay holes in the copy.
    """
    if dfd is None:
        fd = open_existing_nofollow(path)
    else:
        fd = open_regular_at(dfd, os.path.basename(path))
    if fd is None:
        return None
    quarantine_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = quarantine_dir / f"{stamp}-{secrets.token_hex(3)}-{os.path.basename(path)}"
    bad: list[list[int]] = []
    try:
        size = os.fstat(fd).st_size
        out = os.open(
            dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            offset = 0
            while offset < size:
                n = min(BLOCK, size - offset)
                try:
                    data = os.pread(fd, n, offset)
                except OSError as e:
                    if e.errno not in IO_ERRNOS:
                        raise
                    # Salvage what can be read around the bad sectors.
                    data = _read_around(fd, offset, n, bad)
                if not data:
                    break
                if data.count(0) != len(data):  # all zeros: leave a hole
                    os.pwrite(out, data, offset)
                offset += len(data)
            os.ftruncate(out, offset)
            os.fsync(out)
        finally:
            os.close(out)
    finally:
        os.close(fd)
    note = {"path": path, "copied": str(dest), "size": size, "unreadable": bad, "time": time.time()}
    (dest.parent / (dest.name + ".json")).write_text(json.dumps(note, indent=1) + "\n")
    return note


def heal_file(
    repo: Repository,
    path: str,
    journal_dir: str | None,
    quarantine_dir: str,
    in_place: bool = False,
) -> dict[str, Any]:
    """Run the heal procedure on entry ``path``; return what was done.

    ``in_place``: write the rebuilt content into the file's inode rather than
    rename a new file over it: a program that holds the file open for writing
    then keeps writing into the live file, not into an unlinked one."""
    jdir = Path(journal_dir) if journal_dir else None
    moment = resolve(repo, path, jdir, None)
    base = moment.base
    rebuilt_hash = ""

    def fill(fd: int) -> int:
        nonlocal rebuilt_hash
        if moment.replays:
            size = rebuild_into(repo, moment, jdir, fd)
            punch_zero_blocks(fd, size)  # the base was written with its zeros
        else:
            size = write_sparse(fd, repo.read_version(base))
        hasher = blake3.blake3()
        offset = 0
        while data := os.pread(fd, 8 << 20, offset):
            hasher.update(data)
            offset += len(data)
        rebuilt_hash = hasher.hexdigest()
        if not moment.replays and rebuilt_hash != base.hash:
            raise RestoreError(f"version {base.id} of {path} rebuilt to a different hash")
        return size

    mtime_ns = base.mtime_ns if not moment.replays else int(moment.time * 1e9)
    meta = FileMeta(base.mode, base.uid, base.gid, mtime_ns)
    directory, name = os.path.split(path)
    # One no-follow walk: the copy, the replacement and the read-back all
    # happen in this directory, whatever is swapped in for its path meanwhile.
    dfd = open_dir_nofollow(directory)
    try:
        kept = quarantine(path, Path(quarantine_dir), dfd)
        size = replace_in_dir(dfd, name, path, fill, meta, keep_links=True, keep_inode=in_place)
        check = open_regular_at(dfd, name)
        if check is None:
            raise RestoreError(f"{path} is not there after healing")
        try:
            hasher = blake3.blake3()
            while data := os.read(check, 8 << 20):
                hasher.update(data)
        finally:
            os.close(check)
    finally:
        os.close(dfd)
    if hasher.hexdigest() != rebuilt_hash:
        raise RestoreError(f"{path} reads back with a different hash after healing")
    return {
        "path": path,
        "version": base.id,
        "journal_seq": moment.upto_seq,
        "hash": rebuilt_hash,
        "size": size,
        "quarantined": kept["copied"] if kept else None,
        "unreadable": kept["unreadable"] if kept else [],
    }


def file_hash(path: str) -> tuple[str, int, int] | tuple[None, int, int]:
    """(blake3 hex, size, mtime_ns) of ``path``; hash None when a read fails with EIO.

    Opened with safeio.open_protected: UnsafePath for a symlink at the name or
    in a parent, FileNotFoundError when absent."""
    fd = open_protected(path)
    try:
        st = os.fstat(fd)
        hasher = blake3.blake3()
        try:
            while data := os.read(fd, 8 << 20):
                hasher.update(data)
        except OSError as e:
            if e.errno in IO_ERRNOS:
                return None, st.st_size, st.st_mtime_ns
            raise
        return hasher.hexdigest(), st.st_size, st.st_mtime_ns
    finally:
        os.close(fd)


def expected_state(repo: Repository, path: str, journal_dir: str | None) -> dict[str, Any]:
    """What the live file should hold: the newest state's hash, size and mtime."""
    jdir = Path(journal_dir) if journal_dir else None
    moment = resolve(repo, path, jdir, None)
    if not moment.replays:
        b = moment.base
        return {"hash": b.hash, "size": b.size, "mtime_ns": b.mtime_ns, "journal": False}
    # A journaled write reaches the file just after its record: allow for that.
    latest_write_ns = int((moment.time + JOURNAL_SLACK_S) * 1e9)
    import tempfile

    with tempfile.TemporaryFile() as tmp:
        size = rebuild_into(repo, moment, jdir, tmp.fileno())
        hasher = blake3.blake3()
        tmp.seek(0)
        while data := tmp.read(8 << 20):
            hasher.update(data)
    return {"hash": hasher.hexdigest(), "size": size, "mtime_ns": latest_write_ns, "journal": True}


def verify_file(repo: Repository, path: str, journal_dir: str | None) -> dict[str, Any]:
    """Compare the live file with its newest recorded state.

    ``status``: ``ok``; ``changed`` (size or mtime moved since the last
    version: a real edit, not corruption); ``corrupt`` (same size and mtime
    but other content — silent corruption — or a read error); ``missing``.
    """
    try:
        live_hash, size, mtime_ns = file_hash(path)
    except FileNotFoundError:
        return {"path": path, "status": "missing", "detail": "the file does not exist"}
    want = expected_state(repo, path, journal_dir)
    if live_hash is None:
        return {"path": path, "status": "corrupt", "detail": "reading the file failed with EIO"}
    if live_hash == want["hash"]:
        return {"path": path, "status": "ok", "detail": "content matches the newest state"}
    if want["journal"] and mtime_ns <= want["mtime_ns"]:
        # Nothing wrote the file after its journal's last record, yet it does not
        # hold the journaled state: acknowledged writes did not reach it.
        return {
            "path": path,
            "status": "corrupt",
            "detail": "older than its journal's last record but with other content "
            "(journaled writes are missing from it)",
        }
    if not want["journal"] and size == want["size"] and mtime_ns == want["mtime_ns"]:
        return {
            "path": path,
            "status": "corrupt",
            "detail": "same size and mtime as the newest state but different content",
        }
    return {
        "path": path,
        "status": "changed",
        "detail": "changed since the newest state (size or mtime differ)",
    }
