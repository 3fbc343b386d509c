"""The retention rules (repo/forget.py) against a reference written another way,
with an injected clock (version times) and time zone, and the versions that
retention never removes whatever the rules say."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filetwin.errors import UsageError
from filetwin.policy import Policy, format_duration, parse_duration
from filetwin.repo.forget import Rules, doomed, kept

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC).timestamp()  # a Monday
HOUR, DAY = 3600, 86400


def period_key(name: str) -> Callable[[float], tuple[int, ...]]:
    def key(t: float) -> tuple[int, ...]:
        d = datetime.fromtimestamp(t, UTC)
        return {
            "hourly": (d.year, d.month, d.day, d.hour),
            "daily": (d.year, d.month, d.day),
            "weekly": tuple(d.isocalendar()[:2]),
            "monthly": (d.year, d.month),
        }[name]

    return key


def reference(times: list[float], rules: Rules) -> set[int]:
    """What restic's forget keeps, computed by grouping rather than by one walk."""
    n = len(times)
    out = {n - 1} if n else set()
    out |= set(range(max(0, n - rules.last), n))
    if rules.within_s is not None and n:
        out |= {i for i, t in enumerate(times) if t >= times[-1] - rules.within_s}
    for name in ("hourly", "daily", "weekly", "monthly"):
        count = getattr(rules, name)
        if not count:
            continue
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, t in enumerate(times):
            groups.setdefault(period_key(name)(t), []).append(i)
        newest_first = sorted(groups.values(), key=lambda idx: idx[-1], reverse=True)
        out |= {idx[-1] for idx in newest_first[:count]}
        if n and len(newest_first) < count:
            out.add(0)  # rule not used up: the oldest version is kept too
    return out


times_strategy = st.lists(
    st.integers(min_value=0, max_value=400 * DAY), min_size=0, max_size=60
).map(lambda xs: [T0 + x for x in sorted(xs)])
rules_strategy = st.builds(
    Rules,
    last=st.integers(1, 8),
    within_s=st.one_of(st.none(), st.integers(1, 40 * DAY)),
    hourly=st.integers(0, 6),
    daily=st.integers(0, 6),
    weekly=st.integers(0, 4),
    monthly=st.integers(0, 4),
)


@settings(max_examples=400, deadline=None)
@given(times_strategy, rules_strategy)
def test_selection_matches_the_reference(times: list[float], rules: Rules) -> None:
    assert kept(times, rules, UTC) == reference(times, rules)


@settings(max_examples=200, deadline=None)
@given(times_strategy, rules_strategy, st.sampled_from(["last", "hourly", "daily", "monthly"]))
def test_the_newest_is_kept_and_more_of_a_rule_never_keeps_less(
    times: list[float], rules: Rules, name: str
) -> None:
    before = kept(times, rules, UTC)
    if times:
        assert len(times) - 1 in before
    more = Rules(**{**rules.__dict__, name: getattr(rules, name) + 1})
    assert before <= kept(times, more, UTC)


def test_daily_keeps_the_newest_of_each_of_the_last_days_with_versions() -> None:
    # versions every 6 hours for 3 days, then nothing for 2 days, then one
    times = [T0 + h * HOUR for h in range(0, 72, 6)] + [T0 + 5 * DAY + HOUR]
    got = kept(times, Rules(last=1, daily=3), UTC)
    # the day without versions does not use up a count: day 5, day 2, day 1
    assert got == {len(times) - 1, 11, 7}
    # more days asked than exist: the oldest version is kept as well
    assert kept(times, Rules(last=1, daily=10), UTC) == {len(times) - 1, 11, 7, 3, 0}


def test_hourly_weekly_monthly_buckets() -> None:
    times = [T0 + m * 60 for m in range(0, 180, 20)]  # 09 versions over 3 hours
    assert kept(times, Rules(last=1, hourly=2), UTC) == {8, 5}
    weeks = [T0 + d * DAY for d in (0, 3, 6, 7, 13, 14)]  # Mon, Thu, Sun | Mon, Sun | Mon
    assert kept(weeks, Rules(last=1, weekly=2), UTC) == {5, 4}
    months = [datetime(2026, m, d, tzinfo=UTC).timestamp() for m, d in ((1, 5), (1, 30), (3, 1))]
    assert kept(months, Rules(last=1, monthly=5), UTC) == {2, 1, 0}


def test_within_counts_from_the_newest_version_not_from_now() -> None:
    times = [T0, T0 + DAY, T0 + 6 * DAY, T0 + 7 * DAY, T0 + 8 * DAY]
    assert kept(times, Rules(last=1, within_s=7 * DAY), UTC) == {1, 2, 3, 4}  # inclusive
    assert kept(times, Rules(last=2), UTC) == {3, 4}


def test_days_are_local_days() -> None:
    tz = __import__("datetime").timezone(timedelta(hours=9))
    # 14:00 and 16:00 UTC are the same UTC day, but 23:00 and 01:00 the next day at UTC+9
    times = [T0 + 14 * HOUR, T0 + 16 * HOUR]
    assert kept(times, Rules(last=1, daily=2), UTC) == {1, 0}  # oldest kept: rule not used up
    assert kept(times + [T0 + 17 * HOUR], Rules(last=1, daily=1), UTC) == {2}
    assert kept(times + [T0 + 17 * HOUR], Rules(last=1, daily=2), tz) == {2, 0}


def names(times: list[float]) -> list[str]:
    return [f"manifests/k/{int(t * 1e9):019d}-{i:016x}.json" for i, t in enumerate(times)]


def test_doomed_spares_the_newest_restore_and_the_newest_replay_base() -> None:
    times = [T0 + i * HOUR for i in range(6)]
    ns = names(times)
    causes = dict(zip(ns, ["initial", "restore", "close", "restore", "checkpoint", "restore"],
                      strict=True))
    asked: list[str] = []

    def cause(name: str) -> str | None:
        asked.append(name)
        return causes[name]

    # keep 1: the newest (a restore) stays, and so does the newest base (4)
    gone = doomed(ns, Rules(last=1), cause, UTC)
    assert gone == [ns[0], ns[1], ns[2], ns[3]]
    # the newest is a base and the newest restore is old: that restore is spared
    causes[ns[5]] = "close"
    asked.clear()
    gone = doomed(ns, Rules(last=1), cause, UTC)
    assert gone == [ns[0], ns[1], ns[2], ns[4]]
    # causes read: the doomed ones, then only what decides whether a restore is newest
    assert set(asked) == set(ns[:5]) | {ns[5]}


def test_doomed_reads_no_cause_when_nothing_goes() -> None:
    ns = names([T0, T0 + 1])

    def cause(name: str) -> str | None:
        raise AssertionError("no manifest read when the rules keep everything")

    assert doomed(ns, Rules(last=2), cause, UTC) == []


def test_an_unknown_cause_never_stands_in_for_a_newer_base() -> None:
    ns = names([T0, T0 + 1, T0 + 2])
    causes = {ns[0]: "checkpoint", ns[1]: "checkpoint", ns[2]: None}
    # the newest manifest cannot be read: the newest known base (1) is kept
    assert doomed(ns, Rules(last=1), causes.__getitem__, UTC) == [ns[0]]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", 7 * DAY), ("12h", 12 * HOUR), ("30m", 1800), ("2w", 14 * DAY), ("90s", 90),
     ("1d12h", DAY + 12 * HOUR), ("3600", 3600), (" 2H ", 2 * HOUR), ("0", None), (0, None)],
)
def test_durations(text: str, seconds: int | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["7x", "", "d", "-1d", "1.5d", "7d 2h", "1y", "-5", True])
def test_bad_durations_say_what_is_expected(text: object) -> None:
    with pytest.raises(UsageError, match="keep-within"):
        parse_duration(text)  # type: ignore[arg-type]


def test_format_duration_round_trips() -> None:
    for s in (90, 1800, 5400, 7 * DAY, DAY + 12 * HOUR + 5):
        assert parse_duration(format_duration(s)) == s
    assert format_duration(None) == "-"


def test_policy_validates_the_new_fields() -> None:
    p = Policy().updated({"keep_within": "7d", "keep_daily": 7, "keep_hourly": 24})
    assert (p.keep_within_s, p.keep_daily, p.keep_hourly) == (7 * DAY, 7, 24)
    assert p.rules() == Rules(last=50, within_s=7 * DAY, hourly=24, daily=7)
    assert p.updated({"keep_within": 0}).keep_within_s is None  # 0 turns it off
    assert p.updated({"keep": 3}).keep_daily == 7  # untouched fields stay
    with pytest.raises(UsageError, match="keep-daily must be an integer from 0"):
        Policy().updated({"keep_daily": -1})
    with pytest.raises(UsageError, match="keep-monthly"):
        Policy().updated({"keep_monthly": True})
    with pytest.raises(UsageError, match="keep-within"):
        Policy().updated({"keep_within": "7x"})
