"""Rebuild a version into place, bit for bit, without following planted links."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3

from .errors import NotFound, RestoreError, UsageError
from .repo import Manifest, Repository
from .safeio import FileMeta, open_existing_nofollow, replace_file
from .timefmt import iso, parse_time


def choose_version(
    repo: Repository, path: str, version: str | None = None, at: str | float | None = None
) -> Manifest:
    """The version named by id prefix, the newest at or before ``at``, or the latest."""
    if version is not None and at is not None:
        raise UsageError("give either a version or a time, not both")
    if version is not None:
        return repo.find_version(path, version)
    if at is not None:
        return repo.version_at(path, parse_time(at))
    latest = repo.latest(path)
    if latest is None:
        raise NotFound(f"{path} has no versions in the repository {repo.backend.location}")
    return latest


def verified_content(repo: Repository, manifest: Manifest) -> Iterator[bytes]:
    """The version's bytes; raises RestoreError at the end if the whole-file hash differs."""
    hasher = blake3.blake3()
    for data in repo.read_version(manifest):
        hasher.update(data)
        yield data
    if hasher.hexdigest() != manifest.hash:
        raise RestoreError(
            f"version {manifest.id} of {manifest.path} rebuilt to a different hash; "
            "the repository is damaged (run `filetwin check --read-data`)"
        )


def keep_current_aside(repo: Repository, path: str, manifest: Manifest) -> str | None:
    """Store the content at ``path`` as a version of cause ``restore`` unless it equals
    ``manifest``. Returns the id of the version kept, or None."""
    fd = open_existing_nofollow(path)
    if fd is None:
        return None
    try:
        st = os.fstat(fd)
        if st.st_size == manifest.size:
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
) -> dict[str, Any]:
    """Restore a version of entry ``path`` in place or to ``to``; return what was done."""
    manifest = choose_version(repo, path, version, at)
    if to is None:
        target = path
        kept = keep_current_aside(repo, path, manifest)
    else:
        dest = Path(to)
        if not dest.is_absolute():
            dest = Path.cwd() / dest
        # The user chose the destination: resolve its directory as they see it,
        # then write inside it without following anything planted at the name.
        target = str(dest.parent.resolve() / dest.name)
        kept = None
    meta = FileMeta(manifest.mode, manifest.uid, manifest.gid, manifest.mtime_ns)
    size = replace_file(target, verified_content(repo, manifest), meta)
    return {
        "path": path,
        "target": target,
        "version": manifest.id,
        "version_time": iso(manifest.time),
        "hash": manifest.hash,
        "size": size,
        "kept_version": kept,
    }
