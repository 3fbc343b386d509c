"""Backup and recovery policy of an entry: parsing, validation, defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import UsageError

BACKUP_MODES = ("on-close", "on-write")
RECOVERY_MODES = ("auto", "manual", "notify")
SYNC_MODES = ("always", "batch")
MAX_RETRIES = 100
MAX_KEEP = 100_000
MAX_TIMEOUT_S = 7 * 24 * 3600


@dataclass(frozen=True)
class Policy:
    """What an entry asks for. ``timeout_s`` None means: scaled to the file's size."""

    backup_mode: str = "on-close"
    recovery_mode: str = "manual"
    retries: int = 3
    timeout_s: float | None = None
    keep: int = 50
    #: on-write durability: "always" fdatasyncs each record before acknowledging it,
    #: "batch" acknowledges at once and makes records durable within a short window
    sync_mode: str = "batch"

    def validated(self) -> Policy:
        if self.backup_mode not in BACKUP_MODES:
            raise UsageError(
                f"backup mode must be one of {', '.join(BACKUP_MODES)}, not {self.backup_mode!r}"
            )
        if self.recovery_mode not in RECOVERY_MODES:
            raise UsageError(
                f"recovery mode must be one of {', '.join(RECOVERY_MODES)}, "
                f"not {self.recovery_mode!r}"
            )
        if (
            not isinstance(self.retries, int)
            or isinstance(self.retries, bool)
            or not (0 <= self.retries <= MAX_RETRIES)
        ):
            raise UsageError(
                f"retries must be an integer from 0 to {MAX_RETRIES}, not {self.retries!r}"
            )
        if self.timeout_s is not None and (
            isinstance(self.timeout_s, bool)
            or not isinstance(self.timeout_s, int | float)
            or not (0 < self.timeout_s <= MAX_TIMEOUT_S)
        ):
            raise UsageError(
                f"timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT_S}, "
                f"not {self.timeout_s!r}"
            )
        if (
            not isinstance(self.keep, int)
            or isinstance(self.keep, bool)
            or not (1 <= self.keep <= MAX_KEEP)
        ):
            raise UsageError(f"keep must be an integer from 1 to {MAX_KEEP}, not {self.keep!r}")
        if self.sync_mode not in SYNC_MODES:
            raise UsageError(
                f"sync mode must be one of {', '.join(SYNC_MODES)}, not {self.sync_mode!r}"
            )
        return self

    def updated(self, changes: dict[str, Any]) -> Policy:
        """A copy with ``changes`` (API names: backup, recovery, retries, timeout, keep, sync)."""
        mapping = {
            "backup": "backup_mode",
            "recovery": "recovery_mode",
            "retries": "retries",
            "timeout": "timeout_s",
            "keep": "keep",
            "sync": "sync_mode",
        }
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for key, value in changes.items():
            if key not in mapping:
                raise UsageError(f"unknown policy option {key!r}")
            if value is not None:
                fields[mapping[key]] = value
        return Policy(**fields).validated()


def scaled_timeout(policy_timeout: float | None, size: int, floor: float, rate: float) -> float:
    """The job deadline: the policy's, or ``floor`` plus the time to read ``size`` at ``rate``."""
    if policy_timeout is not None:
        return float(policy_timeout)
    return floor + size / rate
