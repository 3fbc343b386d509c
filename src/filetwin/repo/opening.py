"""Opening a repository: its backend, its format, its keys, its local cache.

The one place that turns a location into a Repository, for the daemon, its
workers and the offline commands alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from filetwin.backends import LocalBackend, open_backend
from filetwin.errors import RepositoryError, UsageError
from filetwin.repo import format as fmt
from filetwin.repo.crypto import Keys
from filetwin.repo.repository import Repository


def open_repository(
    location: str,
    *,
    state_dir: Path | None = None,
    create_mode: str | None = None,
    passphrase: fmt.Passphrase | None = None,
    keys: Keys | None = None,
    clock: Callable[[], float] = time.time,
) -> Repository:
    """The repository at ``location``.

    An empty location is created with encryption ``create_mode`` when given
    (RepositoryError otherwise: "no repository"); an existing unencrypted
    repository is refused (RepositoryError) when ``create_mode`` asks for
    encryption. ``keys`` (already unlocked,
    e.g. handed to a worker) skip unlocking; else a repokey repository asks
    ``passphrase()`` and a keyfile one reads its key file (``$FILETWIN_KEY_FILE``
    or the state directory's). With a ``state_dir``, the repository's id and
    mode are remembered there and a swapped or downgraded repository is refused;
    index objects of a remote repository are cached there.
    WrongPassphrase, UsageError (nothing to unlock with) and RepositoryError
    leave everything as it was.
    """
    backend = open_backend(location)
    info = fmt.read_info(backend)
    key_file = None
    if info is None:
        if create_mode is None:
            raise RepositoryError(f"no repository at {location} (see `filetwin init`)")
        info, created = fmt.create(
            backend, create_mode, passphrase=passphrase, key_file_for=_key_file_for(state_dir)
        )
        keys = keys or created
    elif create_mode not in (None, "none") and info.encryption == "none":
        # The setting applies when a repository is created; storing in the clear
        # into an existing unencrypted one while encryption was asked for would
        # be a silent failure of it.
        raise RepositoryError(
            f"the config asks for encryption {create_mode!r} but repository {location} "
            "exists unencrypted (encryption is chosen when a repository is created): "
            'set encryption = "none" to keep using it, or name a new repository location'
        )
    if state_dir is not None:
        fmt.verify_known(state_dir, location, info)
    if keys is None:
        if info.encryption == "keyfile":
            key_file = _key_file_for(state_dir)(info.id)
        keys = fmt.unlock(backend, info, passphrase=passphrase, key_file=key_file)
    if state_dir is not None and create_mode is not None:
        fmt.remember(state_dir, location, info)
    cache = None
    if state_dir is not None and not isinstance(backend, LocalBackend):
        cache = state_dir / "cache" / (info.id or "v1")
    return Repository(backend, clock, keys=keys, cache_dir=cache)


def _key_file_for(state_dir: Path | None) -> Callable[[str], Path]:
    def path(repo_id: str) -> Path:
        if state_dir is None and not fmt.key_file_env():
            raise UsageError(
                f"the repository is encrypted with a key file: name it with ${fmt.KEY_FILE_ENV}"
            )
        return fmt.default_key_file(state_dir or Path("."), repo_id)

    return path
