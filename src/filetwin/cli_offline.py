"""The repository and table as commands read them with no daemon running.

``check``, ``history`` and ``restore`` must work without the daemon, on the
repository the daemon stores into: the one the config names, and for an
entry the one recorded in its row of the management table. Nothing here
creates anything: a state directory or a repository location that does not
exist is reported, never made (a typo must not look like an empty, healthy
repository).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import Config
from .errors import RepositoryError

#: what a local repository directory holds once anything was stored in it
REPOSITORY_MARKS = ("config", "manifests", "chunks", "packs")


def _local_path(location: str) -> Path | None:
    """The directory of a local repository location (None for another scheme)."""
    if location.startswith("file://"):
        return Path(location[len("file://") :]).expanduser()
    if "://" in location:
        return None
    return Path(location).expanduser()


def table_repositories(config: Config, paths: tuple[str, ...] = ()) -> list[str]:
    """Repositories recorded in the table: of the entries named by ``paths`` when
    given, else of every entry. Read-only; [] when there is no table."""
    if not config.table_path.is_file():
        return []
    uri = f"file:{config.table_path}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=5)
    except sqlite3.Error:
        return []
    db.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
    try:
        if paths:
            marks = ",".join("CAST(? AS TEXT)" for _ in paths)
            rows = db.execute(
                f"SELECT DISTINCT repository FROM entries WHERE path IN ({marks})",
                [p.encode("utf-8", "surrogateescape") for p in paths],
            ).fetchall()
        else:
            rows = db.execute("SELECT DISTINCT repository FROM entries ORDER BY id").fetchall()
    except sqlite3.Error:
        return []
    finally:
        db.close()
    return [r[0] for r in rows if r[0]]


def repository_location(config: Config, entry_paths: tuple[str, ...] = ()) -> str:
    """Where an offline command reads: the entry's recorded repository, else the
    config's named one, else the one the table's entries record, else the default."""
    if entry_paths:
        recorded = table_repositories(config, entry_paths)
        if recorded:
            return recorded[0]
    if config.repository:
        return config.repository
    recorded = table_repositories(config)
    if len(recorded) == 1:
        return recorded[0]
    return config.repository_location


def open_existing(
    location: str, state_dir: Path | None = None, passphrase: Callable[[], bytes] | None = None
) -> Any:
    """The Repository at ``location``; RepositoryError (exit 1) when the location
    holds none. Never creates the location. An encrypted repository asks for its
    passphrase ($FILETWIN_PASSWORD, $FILETWIN_PASSWORD_FILE, or a prompt on a
    terminal; or ``passphrase()``); ``state_dir`` (when it exists) holds a keyfile
    repository's key and what the daemon knew of the repository."""
    from .repo.opening import open_repository

    local = _local_path(location)
    if local is not None:
        if not local.is_dir():
            raise RepositoryError(
                f"no repository at {location}: it does not exist (the daemon creates it "
                "when it stores the first version; see --config and --state-dir)"
            )
        if not any((local / mark).exists() for mark in REPOSITORY_MARKS):
            raise RepositoryError(
                f"no repository at {location}: the directory holds no versions "
                "(see --config and --state-dir)"
            )
    known = state_dir if state_dir is not None and state_dir.is_dir() else None
    return open_repository(location, state_dir=known, passphrase=passphrase or prompted_passphrase)


def prompted_passphrase() -> bytes:
    """The passphrase from the environment, else asked on the terminal."""
    import getpass
    import sys

    from .repo.crypto import passphrase_from_env

    prompt = (lambda: getpass.getpass("repository passphrase: ")) if sys.stdin.isatty() else None
    return passphrase_from_env(prompt)


def entry_candidates(path: str) -> tuple[str, ...]:
    """The names an entry of ``path`` may have: as given (absolute) and resolved."""
    norm = os.path.abspath(path)
    real = os.path.realpath(norm)
    return (norm,) if real == norm else (norm, real)
