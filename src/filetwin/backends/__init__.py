"""Object stores for the repository: the Backend interface and its implementations."""

from __future__ import annotations

from pathlib import Path

from filetwin.backends.base import Backend, validate_name
from filetwin.backends.local import LocalBackend
from filetwin.errors import UsageError

__all__ = ["Backend", "LocalBackend", "open_backend", "validate_name"]


def open_backend(location: str | Path) -> Backend:
    """Open the backend a location string names.

    A plain path or ``file://PATH`` opens a LocalBackend (created if missing);
    ``s3://...`` is not available yet; any other scheme, or an empty location,
    raises UsageError naming it.
    """
    if isinstance(location, Path):
        return LocalBackend(location)
    if not location:
        raise UsageError("empty repository location")
    if location.startswith("file://"):
        path = location[len("file://") :]
        if not path:
            raise UsageError(f"repository location {location!r} names no path")
        return LocalBackend(Path(path).expanduser())
    if location.startswith("s3://"):
        raise UsageError("S3 backend not available yet")
    if "://" in location:
        scheme = location.split("://", 1)[0]
        raise UsageError(f"unknown repository scheme {scheme!r} in {location!r}")
    return LocalBackend(Path(location).expanduser())
