"""Object stores for the repository: the Backend interface and its implementations."""

from __future__ import annotations

from pathlib import Path

from filetwin.backends.base import Backend, validate_name, validate_range
from filetwin.backends.local import LocalBackend
from filetwin.errors import UsageError

__all__ = ["Backend", "LocalBackend", "open_backend", "validate_name", "validate_range"]


def open_backend(
    location: str | Path,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    create: bool = False,
) -> Backend:
    """Open the backend a location string names.

    A plain path or ``file://PATH`` opens a LocalBackend (created if missing);
    ``s3://BUCKET[/PREFIX]`` opens an S3Backend (``endpoint_url``/``region``
    override the AWS environment; ``create`` creates a missing bucket, see
    backends/s3.py); any other scheme, or an empty location, raises
    UsageError naming it, as does an endpoint or region given for a local path.
    """
    if isinstance(location, str) and location.startswith("s3://"):
        # Imported here: a local repository never needs the S3 client library.
        from filetwin.backends.s3 import S3Backend

        return S3Backend(location, endpoint_url=endpoint_url, region=region, create=create)
    if endpoint_url is not None or region is not None:
        raise UsageError(
            f"an S3 endpoint or region applies to s3:// locations only, not {location!r}"
        )
    if isinstance(location, Path):
        return LocalBackend(location)
    if not location:
        raise UsageError("empty repository location")
    if location.startswith("file://"):
        path = location[len("file://") :]
        if not path:
            raise UsageError(f"repository location {location!r} names no path")
        return LocalBackend(Path(path).expanduser())
    if "://" in location:
        scheme = location.split("://", 1)[0]
        raise UsageError(
            f"unknown repository scheme {scheme!r} in {location!r} (use a path, file://PATH or s3://BUCKET/PREFIX)"
        )
    return LocalBackend(Path(location).expanduser())
