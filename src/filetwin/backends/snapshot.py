"""A Backend wrapper for one reader of many entries: each listing root taken once.

A restore of every entry asks, per entry, for the list of its manifests and of
its journal objects, and reads its newest manifest two or three times (to find
the entry's path, then to resolve the moment). On S3 each of those is a
request with its own round trip. Wrapped in a ListingSnapshot, the first
listing under one of its roots lists the whole root, one request per 1,000
names, and later listings under it are filtered from memory; objects under its
immutable roots (content-named manifests) are read once.

Only for a reader that needs no news: objects others put after a root was
listed are not seen, and an object others delete stays listed (its get then
raises ObjectNotFound, which readers of listings already expect: retention
may remove a version between a listing and a read). Puts and deletes made
through the wrapper keep it coherent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

from .base import Backend, validate_name


class ListingSnapshot:
    """``backend`` with the listings under ``roots`` taken once (see module doc).

    ``roots`` are name prefixes ending in "/"; a ``list(prefix)`` inside one of
    them is answered from that root's listing, any other goes to the backend.
    Whole-object reads of names under ``immutable`` roots are cached (they must
    be objects never rewritten under the same name). Thread-safe.
    """

    def __init__(
        self, backend: Backend, roots: Iterable[str], *, immutable: Iterable[str] = ()
    ) -> None:
        self.backend = backend
        self.location = backend.location
        self.roots = tuple(roots)
        self.immutable = tuple(immutable)
        self._listed: dict[str, set[str]] = {}
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        # Capabilities a backend declares (cheap_ranges, ...) are the wrapped one's.
        return getattr(self.backend, name)

    def _root_of(self, prefix: str) -> str | None:
        return next((r for r in self.roots if prefix.startswith(r)), None)

    def _listing(self, root: str) -> set[str]:
        with self._lock:
            names = self._listed.get(root)
        if names is None:
            names = set(self.backend.list(root))
            with self._lock:
                names = self._listed.setdefault(root, names)
        return names

    def list(self, prefix: str = "") -> Iterator[str]:
        root = self._root_of(prefix)
        if root is None:
            yield from self.backend.list(prefix)
            return
        base = prefix.rpartition("/")[0]
        if base:
            validate_name(base)  # as every backend: a prefix cannot escape the store
        names = self._listing(root)
        with self._lock:
            found = [n for n in names if n.startswith(prefix)]
        yield from found

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        whole = offset == 0 and length is None
        if whole and name.startswith(self.immutable):
            with self._lock:
                cached = self._objects.get(name)
            if cached is not None:
                return cached
            data = self.backend.get(name)
            with self._lock:
                self._objects[name] = data
            return data
        return self.backend.get(name, offset, length)

    def exists(self, name: str) -> bool:
        return self.backend.exists(name)

    def put(self, name: str, data: bytes) -> None:
        self.backend.put(name, data)
        root = self._root_of(name)
        with self._lock:
            self._objects.pop(name, None)
            if root is not None and root in self._listed:
                self._listed[root].add(name)

    def delete(self, name: str) -> None:
        self.backend.delete(name)
        root = self._root_of(name)
        with self._lock:
            self._objects.pop(name, None)
            if root is not None and root in self._listed:
                self._listed[root].discard(name)
