"""Times as users write them (ISO 8601 or Unix seconds) and as we show them."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from .errors import UsageError


def iso(ts: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC with milliseconds (truncated), ``None`` kept.

    The same arithmetic as the table's SQL (``Table.status_json``), so both
    paths print the same instant the same way.
    """
    if ts is None:
        return None
    secs = math.floor(ts)
    ms = int((ts - secs) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}Z"


def parse_time(text: str | float | int) -> float:
    """ISO 8601 (naive means UTC) or Unix seconds → Unix seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return _finite(float(text), text)
    value = str(text).strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return _finite(seconds, value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as e:
        raise UsageError(
            f"time {value!r} is neither ISO 8601 (2026-11-25T10:00:00Z) nor Unix seconds"
        ) from e
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        seconds = parsed.timestamp()
    except (OverflowError, ValueError) as e:  # year 1 in a zone west of UTC
        raise UsageError(f"time {value!r} is out of range") from e
    return _finite(seconds, value)


#: the times a file can have: the Unix epoch to the last second of year 9999
TIME_MIN = 0.0
TIME_MAX = 253402300799.0


def _finite(seconds: float, given: object) -> float:
    """``seconds`` if it is a time filetwin can name; UsageError otherwise.

    NaN, infinities and times before 1970 or after 9999 are refused here so
    that no caller meets an OverflowError from ``gmtime`` or ``datetime``.
    """
    if not math.isfinite(seconds):
        raise UsageError(f"time {given!r} is not a finite number of Unix seconds")
    if not TIME_MIN <= seconds <= TIME_MAX:
        raise UsageError(
            f"time {given!r} is out of range (1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z)"
        )
    return seconds
