"""Which versions retention keeps: restic's ``forget`` rules, as pure functions.

A version is kept if ANY rule keeps it:

* ``last``: the newest ``last`` versions (``--keep``);
* ``within_s``: every version made within ``within_s`` seconds of the newest
  version's time (not of now: a file left alone keeps its history);
* ``hourly``/``daily``/``weekly``/``monthly``: walking from the newest
  version, the newest version of each hour/day/ISO week/month, for the last
  N such periods that hold a version (periods with none are skipped, not
  counted); when a rule still has periods left at the oldest version, the
  oldest version is kept too (restic ≥ 0.17: the history kept is as long as
  the rule allows).

The newest version is always kept. Periods are in the machine's local time
(``tz`` None), as restic's are, or in ``tz`` for tests.

What else must survive (the newest version a journal replay starts from, the
content a restore kept aside) depends on the versions' causes, which the
caller knows: see Repository.apply_retention.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo


@dataclass(frozen=True)
class Rules:
    """An entry's retention rules; a count of 0 (or ``within_s`` None) turns a rule off."""

    last: int = 50
    within_s: int | None = None
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0


def _periods(tz: tzinfo | None) -> list[tuple[str, Callable[[float], tuple[int, ...]]]]:
    def local(t: float) -> datetime:
        # fromtimestamp with tz None is local time, what a person calls "that day"
        return datetime.fromtimestamp(t, tz)

    def week(t: float) -> tuple[int, ...]:
        iso = local(t).isocalendar()
        return (iso.year, iso.week)

    return [
        ("hourly", lambda t: local(t).timetuple()[:4]),
        ("daily", lambda t: local(t).timetuple()[:3]),
        ("weekly", week),
        ("monthly", lambda t: local(t).timetuple()[:2]),
    ]


def kept(times: Sequence[float], rules: Rules, tz: tzinfo | None = None) -> set[int]:
    """Indices of ``times`` (version times, oldest first) that ``rules`` keep.

    Never empty when ``times`` is not: the newest version is always kept.
    """
    n = len(times)
    if n == 0:
        return set()
    keep = {n - 1}
    keep.update(range(max(0, n - rules.last), n))
    if rules.within_s is not None:
        # Inclusive, as restic's: a version exactly within_s older is kept.
        since = times[-1] - rules.within_s
        keep.update(i for i in range(n) if times[i] >= since)
    for name, bucket in _periods(tz):
        left = getattr(rules, name)
        last: tuple[int, ...] | None = None
        for i in range(n - 1, -1, -1):  # newest first: the first seen in a period is its newest
            if left <= 0:
                break
            b = bucket(times[i])
            if b != last or i == 0:
                keep.add(i)
                last = b
                left -= 1
    return keep


def name_time(name: str) -> float:
    """The time of a version from its manifest's name (``.../<time_ns:019d>-<id>.json``)."""
    return int(name.rsplit("/", 1)[1][:19]) / 1e9


def doomed(
    names: Sequence[str],
    rules: Rules,
    cause: Callable[[str], str | None],
    tz: tzinfo | None = None,
) -> list[str]:
    """The manifest names (oldest first, as listed) retention removes.

    Beside what ``kept`` keeps, two versions are never removed, whatever their age:

    * the newest a journal replay starts from (a cause in moments.JOURNAL_BASES):
      the newest state of an on-write entry is that version plus its journal
      (older journal segments are dropped only before the oldest such version);
    * the newest a restore kept aside (cause ``restore``): the last restore in
      place can always be undone.

    ``cause(name)`` reads a version's cause (None when unknown); it is called only
    for the versions the rules would remove, and for newer ones only when one of
    those is such a version, so that retention stays a listing and a few reads.
    """
    from .moments import JOURNAL_BASES  # moments imports the repository, which imports us

    keep = kept([name_time(n) for n in names], rules, tz)
    out = [i for i in range(len(names)) if i not in keep]
    causes: dict[int, str | None] = {}

    def cause_of(i: int) -> str | None:
        if i not in causes:
            causes[i] = cause(names[i])
        return causes[i]

    for kinds in (JOURNAL_BASES, frozenset({"restore"})):
        last = max((i for i in out if cause_of(i) in kinds), default=None)
        if last is None:
            continue
        newer = sorted((j for j in keep if j > last), reverse=True)
        if not any(cause_of(j) in kinds for j in newer):
            keep.add(last)
    return [names[i] for i in out if i not in keep]
