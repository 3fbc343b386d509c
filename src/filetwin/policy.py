"""Backup and recovery policy of an entry: parsing, validation, defaults."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import UsageError
from .repo.forget import Rules

BACKUP_MODES = ("on-close", "on-write")
RECOVERY_MODES = ("auto", "manual", "notify")
SYNC_MODES = ("always", "batch")
MAX_RETRIES = 100
MAX_KEEP = 100_000
MAX_TIMEOUT_S = 7 * 24 * 3600
#: --keep-within at most 100 years
MAX_WITHIN_S = 100 * 365 * 24 * 3600
#: duration units (restic's ``m`` is months; ours is minutes, as in ``30m``)
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:(\d+)([smhdw]))+")
#: the time-based retention counts, their policy field, API and CLI names
PERIOD_RULES = ("hourly", "daily", "weekly", "monthly")


def parse_duration(text: str | int | float) -> int | None:
    """Seconds of a duration: ``7d``, ``12h``, ``30m``, ``2w``, ``90s``, or
    combined (``1d12h``); a bare number is seconds. ``0`` means "no duration"
    (None). UsageError names the problem."""
    if isinstance(text, bool):
        raise UsageError(f"keep-within must be a duration like 7d, 12h, 30m or 2w, not {text!r}")
    if isinstance(text, int | float):
        seconds = text
    else:
        raw = text.strip().lower()
        if raw.isdigit():
            seconds = int(raw)
        elif _DURATION.fullmatch(raw):
            seconds = sum(
                int(n) * DURATION_UNITS[u] for n, u in re.findall(r"(\d+)([smhdw])", raw)
            )
        else:
            raise UsageError(
                f"keep-within must be a duration like 7d, 12h, 30m or 2w "
                f"(units s, m, h, d, w; combined as 1d12h), not {text!r}"
            )
    if not (0 <= seconds <= MAX_WITHIN_S) or seconds != int(seconds):
        raise UsageError(
            f"keep-within must be whole seconds from 0 to {MAX_WITHIN_S} (100 years), "
            f"not {text!r}"
        )
    return int(seconds) or None


def format_duration(seconds: int | None) -> str:
    """``seconds`` the way a person writes it (604800 -> 7d, 5400 -> 1h30m); '-' for None."""
    if not seconds:
        return "-"
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        n, seconds = divmod(seconds, DURATION_UNITS[unit])
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)


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
    #: time-based retention beside ``keep`` (restic's forget): every version within
    #: this many seconds of the newest one (None: rule off) ...
    keep_within_s: int | None = None
    #: ... and the newest of each of the last N hours/days/ISO weeks/months that
    #: hold a version (0: rule off). A version any rule keeps is kept.
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0

    def rules(self) -> Rules:
        """The retention rules this policy asks for."""
        return Rules(
            last=self.keep,
            within_s=self.keep_within_s,
            hourly=self.keep_hourly,
            daily=self.keep_daily,
            weekly=self.keep_weekly,
            monthly=self.keep_monthly,
        )

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
        for period in PERIOD_RULES:
            n = getattr(self, f"keep_{period}")
            if not isinstance(n, int) or isinstance(n, bool) or not (0 <= n <= MAX_KEEP):
                raise UsageError(
                    f"keep-{period} must be an integer from 0 (off) to {MAX_KEEP}, not {n!r}"
                )
        if self.keep_within_s is not None and (
            not isinstance(self.keep_within_s, int)
            or isinstance(self.keep_within_s, bool)
            or not (1 <= self.keep_within_s <= MAX_WITHIN_S)
        ):
            raise UsageError(
                f"keep-within must be whole seconds from 1 to {MAX_WITHIN_S}, "
                f"not {self.keep_within_s!r}"
            )
        if self.sync_mode not in SYNC_MODES:
            raise UsageError(
                f"sync mode must be one of {', '.join(SYNC_MODES)}, not {self.sync_mode!r}"
            )
        return self

    def updated(self, changes: dict[str, Any]) -> Policy:
        """A copy with ``changes`` (API names: see POLICY_FIELDS). None leaves a
        field as it is; ``keep_within`` is a duration (``7d``) or seconds, and
        0 turns it off, as 0 turns off a ``keep_<period>`` count."""
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for key, value in changes.items():
            if key not in POLICY_FIELDS:
                raise UsageError(f"unknown policy option {key!r}")
            if value is not None:
                fields[POLICY_FIELDS[key]] = (
                    parse_duration(value) if key == "keep_within" else value
                )
        return Policy(**fields).validated()

    def table_fields(self) -> dict[str, Any]:
        """The policy as the management table's columns (field names)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


#: API name of each policy field (the /add and /update request keys)
POLICY_FIELDS = {
    "backup": "backup_mode",
    "recovery": "recovery_mode",
    "retries": "retries",
    "timeout": "timeout_s",
    "keep": "keep",
    "sync": "sync_mode",
    "keep_within": "keep_within_s",
    **{f"keep_{p}": f"keep_{p}" for p in PERIOD_RULES},
}


def scaled_timeout(policy_timeout: float | None, size: int, floor: float, rate: float) -> float:
    """The job deadline: the policy's, or ``floor`` plus the time to read ``size`` at ``rate``."""
    if policy_timeout is not None:
        return float(policy_timeout)
    return floor + size / rate
