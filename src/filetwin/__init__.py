"""filetwin keeps a twin of every file that matters and heals the file from it.

The public Python API:

- ``Client`` talks to a running daemon over its Unix socket (docs/api.md);
  ``open`` is a drop-in for the built-in ``open`` whose writes to an
  on-write entry are journaled; ``WriteStream`` is the binary write stream.
- ``Policy`` is an entry's backup and recovery policy.
- The answers' shapes (``Entry``, ``Version``, ``Event``, ...) are TypedDicts
  declared in ``filetwin.shapes``, the same declarations the daemon validates
  requests with and its OpenAPI document is generated from.
- Every error is a ``FiletwinError``; each condition has one class, whichever
  method meets it (a path that is not protected is ``NotFound`` everywhere).
  ``exit_code`` is what the CLI exits with for it (1 failed, 2 bad usage,
  3 no daemon).

Importing filetwin loads no daemon dependency (aiohttp, rich, mfusepy).
"""

from __future__ import annotations

from .client import Client, WriteStream
from .errors import (
    Conflict,
    CorruptObject,
    DaemonUnavailable,
    FiletwinError,
    JobFailed,
    JobTimeout,
    NotFound,
    ObjectNotFound,
    PermissionDenied,
    RepositoryError,
    RepositoryRefused,
    RestoreError,
    SourceError,
    StateError,
    UnsafePath,
    UsageError,
    WrongPassphrase,
)
from .fileobj import JournalWarning, NotJournaled, open
from .policy import Policy
from .shapes import (
    AddResult,
    Entry,
    EntryChange,
    Event,
    Healed,
    Health,
    Journal,
    Removed,
    Restored,
    VerifyReport,
    Version,
)

__all__ = [
    "AddResult",
    "Client",
    "Conflict",
    "CorruptObject",
    "DaemonUnavailable",
    "Entry",
    "EntryChange",
    "Event",
    "FiletwinError",
    "Healed",
    "Health",
    "JobFailed",
    "JobTimeout",
    "Journal",
    "JournalWarning",
    "NotFound",
    "NotJournaled",
    "ObjectNotFound",
    "PermissionDenied",
    "Policy",
    "Removed",
    "RepositoryError",
    "RepositoryRefused",
    "Restored",
    "RestoreError",
    "SourceError",
    "StateError",
    "UnsafePath",
    "UsageError",
    "VerifyReport",
    "Version",
    "WriteStream",
    "WrongPassphrase",
    "open",
]
