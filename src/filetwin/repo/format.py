"""A repository's identity and keys: the ``config`` object, creating, unlocking.

Objects at the top of a repository::

    config          plain JSON: {"version": 2, "id": <32 hex>, "encryption": MODE}
    keys/repokey    the key file (crypto.py) of a ``repokey`` repository: its
                    keys wrapped by a passphrase

A ``keyfile`` repository keeps its key file outside: by default
``STATE_DIR/keys/<repository id>.key`` (0600), or the file
``$FILETWIN_KEY_FILE`` names (a new host restoring from a replica needs a copy
of it: losing it loses the repository, so `filetwin init` says so).

A repository with no ``config`` but with objects is one written before
version 2 (loose chunks, plain manifests): it opens as version 1, unencrypted,
and `filetwin migrate` moves it to version 2. An empty location is no
repository at all.

``config`` itself is not sealed (it must be read before any key is known);
changing its ``encryption`` to ``none`` does not expose anything: sealed
objects then fail to parse, and a state directory that knows the repository
(``STATE_DIR/repository.json``) refuses a repository whose mode or id changed.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filetwin.backends.base import Backend
from filetwin.errors import CorruptObject, ObjectNotFound, RepositoryError, UsageError
from filetwin.repo.crypto import (
    DEFAULT_KDF,
    MODES,
    KdfParams,
    Keys,
    create_key_file,
    key_file_mode,
    load_key_file,
    read_key_file,
    write_key_file,
)

CONFIG = "config"
REPOKEY = "keys/repokey"
FORMAT_VERSION = 2
KEY_FILE_ENV = "FILETWIN_KEY_FILE"
#: prefixes a version-1 repository has objects under (packs and index objects
#: too, once today's code stored into it: they outlive its manifests until gc)
V1_MARKS = ("manifests/", "chunks/", "packs/", "index/")

Passphrase = Callable[[], bytes | str]


@dataclass(frozen=True)
class RepoInfo:
    """What a repository says of itself."""

    version: int  # 1: written before packs (no config object); 2: packs
    id: str  # 32 hex, "" for version 1
    encryption: str  # one of crypto.MODES


def read_info(backend: Backend) -> RepoInfo | None:
    """The repository's ``config`` (a RepoInfo); version 1 when absent but other
    objects exist; None for a location that holds no repository."""
    try:
        raw = backend.get(CONFIG)
    except ObjectNotFound:
        for prefix in V1_MARKS:
            if next(iter(backend.list(prefix)), None) is not None:
                return RepoInfo(1, "", "none")
        return None
    try:
        doc = json.loads(raw)
        version, rid, mode = doc["version"], doc["id"], doc["encryption"]
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptObject(f"repository config object is malformed: {e}") from e
    if version != FORMAT_VERSION:
        raise RepositoryError(
            f"repository format {version!r} is not one this filetwin reads (it reads "
            f"{FORMAT_VERSION}): upgrade filetwin"
        )
    if mode not in MODES or not isinstance(rid, str) or len(rid) != 32:
        raise CorruptObject("repository config object is malformed: bad id or encryption")
    return RepoInfo(version, rid, mode)


def new_id() -> str:
    """A fresh repository id (32 hex)."""
    return secrets.token_hex(16)


def write_info(backend: Backend, info: RepoInfo) -> None:
    """Put the ``config`` object (the repository exists at version 2 from then on)."""
    doc = {"version": info.version, "id": info.id, "encryption": info.encryption}
    backend.put(CONFIG, (json.dumps(doc, sort_keys=True) + "\n").encode())


def key_file_env() -> str | None:
    """``$FILETWIN_KEY_FILE``, when set."""
    return os.environ.get(KEY_FILE_ENV) or None


def default_key_file(state_dir: Path, repo_id: str) -> Path:
    """Where a keyfile repository's key lives unless $FILETWIN_KEY_FILE says."""
    named = key_file_env()
    return Path(named) if named else state_dir / "keys" / f"{repo_id}.key"


def create(
    backend: Backend,
    mode: str,
    *,
    passphrase: Passphrase | None = None,
    key_file_for: Callable[[str], Path] | None = None,
    kdf: KdfParams = DEFAULT_KDF,
) -> tuple[RepoInfo, Keys]:
    """Make a new version-2 repository at an EMPTY location; its info and keys.

    ``repokey`` asks ``passphrase()``; ``keyfile`` writes the key to
    ``key_file_for(repository id)`` (0600; it must not exist). UsageError when the location
    already holds a repository (nothing is changed) or an argument is missing.
    The key object (or file) is written before ``config``: a crash leaves no
    repository that cannot be opened.
    """
    if mode not in MODES:
        raise UsageError(f"encryption must be one of {', '.join(MODES)}, not {mode!r}")
    existing = read_info(backend)
    if existing is not None:
        raise UsageError(
            f"{backend.location} already holds a repository "
            f"(version {existing.version}, encryption {existing.encryption})"
        )
    info = RepoInfo(FORMAT_VERSION, new_id(), mode)
    if mode == "repokey":
        if passphrase is None:
            raise UsageError("a repokey repository needs a passphrase")
        keys, doc = create_key_file(mode, passphrase(), kdf=kdf)
        backend.put(REPOKEY, doc)
    elif mode == "keyfile":
        if key_file_for is None:
            raise UsageError("a keyfile repository needs a key file path")
        key_file = key_file_for(info.id)
        if key_file.exists():
            raise UsageError(f"key file {key_file} exists already; refusing to replace it")
        keys, doc = create_key_file(mode)
        key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_key_file(key_file, doc)
    else:
        keys = Keys.none()
    write_info(backend, info)
    return info, keys


def unlock(
    backend: Backend,
    info: RepoInfo,
    *,
    passphrase: Passphrase | None = None,
    key_file: Path | None = None,
) -> Keys:
    """The keys of an existing repository. WrongPassphrase for a wrong passphrase;
    UsageError when the passphrase or key file is needed and not given."""
    if info.encryption == "none":
        return Keys.none()
    if info.encryption == "repokey":
        try:
            doc = backend.get(REPOKEY)
        except ObjectNotFound as e:
            raise RepositoryError(
                f"repository {backend.location} is encrypted but its key object "
                f"{REPOKEY} is missing"
            ) from e
        return load_key_file(doc, passphrase)
    if key_file is None:
        raise UsageError(
            f"repository {backend.location} is encrypted with a key file: name it with "
            f"${KEY_FILE_ENV}"
        )
    data = read_key_file(key_file)
    if key_file_mode(data) != "keyfile":
        raise UsageError(f"{key_file} is not the key file of a keyfile repository")
    return load_key_file(data)


def change_passphrase(backend: Backend, old: Passphrase, new: Passphrase) -> None:
    """Rewrap a repokey repository's keys under a new passphrase (one atomic put
    of the key object; no data rewritten). WrongPassphrase leaves it untouched."""
    from filetwin.repo.crypto import change_passphrase_object

    info = read_info(backend)
    if info is None:
        raise UsageError(f"no repository at {backend.location}")
    if info.encryption != "repokey":
        raise UsageError(
            f"repository {backend.location} has no passphrase (encryption {info.encryption})"
        )
    change_passphrase_object(backend, REPOKEY, old(), new())


def remember(state_dir: Path, location: str, info: RepoInfo) -> None:
    """Record in the state directory which repository it uses (id and mode), so a
    repository swapped or downgraded behind our back is refused (``verify_known``)."""
    path = state_dir / "repository.json"
    known = _known(state_dir)
    known[location] = {"id": info.id, "encryption": info.encryption, "version": info.version}
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_key_file(path, (json.dumps(known, sort_keys=True) + "\n").encode())


def verify_known(state_dir: Path, location: str, info: RepoInfo) -> None:
    """RepositoryError when the state directory knew this location as another
    repository, or as encrypted when it now says it is not."""
    seen = _known(state_dir).get(location)
    if not isinstance(seen, dict):
        return
    if seen.get("version") == 2 and info.version == 2 and seen.get("id") != info.id:
        raise RepositoryError(
            f"repository at {location} is not the one this state directory used "
            f"(id {info.id}, expected {seen.get('id')}): refusing to use it"
        )
    if seen.get("encryption", "none") != "none" and info.encryption == "none":
        raise RepositoryError(
            f"repository at {location} was encrypted ({seen.get('encryption')}) and now "
            "says it is not: it was tampered with; refusing to use it"
        )


def _known(state_dir: Path) -> dict[str, Any]:
    try:
        doc = json.loads((state_dir / "repository.json").read_bytes())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}
