"""filetwin keeps a twin of every file that matters and heals the file from it.

The public Python API: ``Client`` talks to a running daemon (see
INTERFACE.md); ``Policy`` and the exception tree are shared with the daemon.
"""

from __future__ import annotations

from .client import Client
from .errors import (
    Conflict,
    DaemonUnavailable,
    FiletwinError,
    JobFailed,
    JobTimeout,
    NotFound,
    RestoreError,
    UnsafePath,
    UsageError,
)
from .fileobj import JournalWarning, NotJournaled, open
from .policy import Policy

__all__ = [
    "Client",
    "Conflict",
    "DaemonUnavailable",
    "FiletwinError",
    "JobFailed",
    "JobTimeout",
    "JournalWarning",
    "NotJournaled",
    "NotFound",
    "Policy",
    "RestoreError",
    "UnsafePath",
    "UsageError",
    "open",
]
