"""The backend interface: a store of named byte objects and nothing else.

Kept deliberately tiny (like restic's internal/backend) so that a new store is
one small module plus one run of tests/backends/conformance.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from filetwin.errors import UsageError

_COMPONENT = re.compile(r"[A-Za-z0-9._-]+")
_TEMP_PREFIX = ".tmp-"


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid object name, else raise UsageError naming it.

    A valid name is '/'-separated components of ``[A-Za-z0-9._-]``: no empty
    component (so no leading, trailing or doubled '/'), no ``.`` or ``..``,
    and no component starting with ``.tmp-`` (reserved for temp files, which
    listings hide).
    """
    if not isinstance(name, str) or not name:
        raise UsageError(f"invalid object name {name!r}: empty")
    for part in name.split("/"):
        if not part:
            raise UsageError(f"invalid object name {name!r}: empty path component")
        if part in (".", ".."):
            raise UsageError(f"invalid object name {name!r}: '{part}' component")
        if not _COMPONENT.fullmatch(part):
            raise UsageError(f"invalid object name {name!r}: only [A-Za-z0-9._-] allowed")
        if part.startswith(_TEMP_PREFIX):
            raise UsageError(f"invalid object name {name!r}: '{_TEMP_PREFIX}' is reserved")
    return name


def validate_range(offset: int, length: int | None) -> None:
    """Raise UsageError naming the problem unless ``offset``/``length`` form a valid range.

    ``offset`` must be an int >= 0; ``length`` None (to the end) or an int >= 0.
    """
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise UsageError(f"invalid range: offset {offset!r} must be an integer >= 0")
    if length is not None and (
        not isinstance(length, int) or isinstance(length, bool) or length < 0
    ):
        raise UsageError(f"invalid range: length {length!r} must be an integer >= 0 or None")


@runtime_checkable
class Backend(Protocol):
    """Stores named byte objects and nothing else.

    Names are '/'-separated relative keys of [A-Za-z0-9._-] components; no
    '..', no leading '/', no empty components (see validate_name; a bad name
    raises UsageError naming it).  Errors of the store itself raise
    RepositoryError (retryable); a missing object raises ObjectNotFound; a store
    that refuses us for a reason retrying cannot fix (credentials refused,
    access denied, bucket missing) raises RepositoryRefused (not retryable).
    """

    #: Human-readable description of where objects live, e.g. the directory path.
    location: str

    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name``, replacing any existing object.

        Durable and atomic when it returns: readers see the whole object or nothing.
        """
        ...

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return the object's bytes from ``offset``, at most ``length`` of them (None: to the end).

        ObjectNotFound if absent (whatever the range).  The range is clipped to
        the object: a range running past the end returns the bytes that exist,
        an offset at or past the end returns b"", ``length=0`` returns b"".
        A negative offset or length raises UsageError.  Packs are read this
        way: a restore fetches the few chunks it needs, not the whole pack.
        """
        ...

    def exists(self, name: str) -> bool:
        """Whether an object named ``name`` exists."""
        ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield every object name starting with the plain string ``prefix``, in any order.

        Never yields temp files of unfinished puts.
        """
        ...

    def delete(self, name: str) -> None:
        """Remove the object; an absent name is not an error."""
        ...
