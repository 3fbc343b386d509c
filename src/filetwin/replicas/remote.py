"""Reading a host's copy in a replica location, with no state directory and no daemon.

A host's copy opens as a repository (read only here: nothing is ever written
to it), and the journal objects of an on-write entry are fetched into a
temporary directory as the segments they are, so history and any-moment
restore run the same code as on the host itself (repo/moments.py), up to the
last record shipped. Damaged journal objects are left out: a replay stops
before the gap they leave, never across it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..backends import open_backend
from ..errors import CorruptObject, NotFound, ObjectNotFound, UsageError
from ..repo.repository import Repository
from .layout import (
    HOSTS,
    host_location,
    open_journal,
    parse_journal_object,
    this_host,
    validate_host,
)

ENDPOINT_ENV = "AWS_ENDPOINT_URL_S3"


def use_endpoint(endpoint: str | None) -> None:
    """Point S3 locations of this process at ``endpoint`` (the CLI's ``--endpoint``)."""
    if endpoint:
        os.environ[ENDPOINT_ENV] = endpoint


def list_hosts(location: str) -> list[str]:
    """The hosts holding a copy in ``location`` (each has a ``config`` object), sorted.

    UsageError for a location that is none; RepositoryError when it cannot be read."""
    backend = open_backend(location) if location.startswith("s3://") else None
    if backend is None:
        local = Path(location[len("file://") :] if location.startswith("file://") else location)
        if not (local.expanduser() / "hosts").is_dir():
            return []
        return sorted(
            p.name
            for p in (local.expanduser() / "hosts").iterdir()
            if (p / "config").is_file() and not p.is_symlink()
        )
    hosts = set()
    for name in backend.list(HOSTS):
        parts = name.split("/")
        if len(parts) == 3 and parts[2] == "config":
            hosts.add(parts[1])
    return sorted(hosts)


def pick_host(location: str, host: str | None) -> str:
    """``host`` when given; else this machine's name when it has a copy there; else
    the only host there. UsageError naming the hosts otherwise."""
    hosts = list_hosts(location)
    if host:
        validate_host(host)
        if host not in hosts:
            known = ", ".join(hosts) or "none"
            raise NotFound(f"no copy of host {host!r} in {location} (hosts there: {known})")
        return host
    if not hosts:
        raise NotFound(f"no host has a copy in {location} (is it a replica location?)")
    mine = this_host()
    if mine in hosts:
        return mine
    if len(hosts) == 1:
        return hosts[0]
    raise UsageError(
        f"{location} holds copies of several hosts ({', '.join(hosts)}): pick one with --host"
    )


def open_host(location: str, host: str | None) -> Repository:
    """The repository copy of ``host`` in ``location`` (see pick_host), unlocked with
    ``$FILETWIN_PASSWORD`` (or a prompt) when encrypted."""
    from ..cli_offline import prompted_passphrase
    from ..repo.opening import open_repository

    where = host_location(location, pick_host(location, host))
    return open_repository(where, passphrase=prompted_passphrase)


def entry_name(repo: Repository, path: str) -> str:
    """The entry ``path`` names in the copy: as given (absolute), or resolved."""
    norm = os.path.abspath(path)
    real = os.path.realpath(norm)
    for name in (norm, real):
        if repo.version_names(name):
            return name
    raise NotFound(f"{norm} has no versions in {repo.backend.location}")


def journal_objects(repo: Repository, path: str) -> list[str]:
    """The names of the entry's journal objects in the copy, oldest first."""
    prefix = f"journals/{repo.entry_key(path)}/"
    return sorted(n for n in repo.backend.list(prefix) if parse_journal_object(n) is not None)


@contextmanager
def fetched_journal(repo: Repository, path: str) -> Iterator[tuple[Path, list[str]]]:
    """A temporary directory holding the entry's shipped journal as segments, and the
    objects left out because they are damaged (named in the list)."""
    with tempfile.TemporaryDirectory(prefix="filetwin-journal-") as tmp:
        damaged: list[str] = []
        for name in journal_objects(repo, path):
            try:
                obj = open_journal(repo.keys, name, repo.backend.get(name))
            except ObjectNotFound:
                continue
            except CorruptObject as e:
                damaged.append(f"{name}: {e}")
                continue
            Path(tmp, f"{obj.first:020d}.seg").write_bytes(obj.segment)
        yield Path(tmp), damaged


def history_from(location: str, host: str | None, path: str) -> dict[str, Any]:
    """``{"entry", "versions", "journal", "damaged"}`` of ``path`` in the host's copy."""
    from ..daemon.api import manifest_json
    from ..repo.journal_summary import journal_summary

    repo = open_host(location, host)
    entry = entry_name(repo, path)
    versions = [manifest_json(m.to_json()) for m in repo.versions(entry)]
    with fetched_journal(repo, entry) as (jdir, damaged):
        journal = journal_summary(jdir)
    return {"entry": entry, "versions": versions, "journal": journal, "damaged": damaged}


def restore_from(
    location: str,
    host: str | None,
    path: str,
    *,
    to: str,
    version: str | None = None,
    at: str | None = None,
) -> dict[str, Any]:
    """Rebuild a version or moment of ``path`` from the host's copy into ``to`` (never
    the entry's own file: the copy is read only)."""
    from ..restore import restore_version

    if not to:
        raise UsageError("a restore from a replica needs --to DEST (the copy is read only)")
    repo = open_host(location, host)
    entry = entry_name(repo, path)
    target = os.path.abspath(to)
    if target == entry or (os.path.exists(entry) and _same_file(entry, target)):
        raise UsageError(
            f"--to {to} is the entry's own file: a restore from a replica writes elsewhere "
            "(then move it into place)"
        )
    with fetched_journal(repo, entry) as (jdir, _damaged):
        return restore_version(
            repo, entry, version=version, at=at, to=target, journal_dir=str(jdir)
        )


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
