"""Policy: defaults, validation messages, updates; the job deadline."""

from __future__ import annotations

from typing import Any

import pytest

from filetwin import Policy, UsageError
from filetwin.policy import MAX_KEEP, MAX_RETRIES, MAX_TIMEOUT_S, scaled_timeout


def test_defaults_match_the_contract() -> None:
    p = Policy().validated()
    assert (p.backup_mode, p.recovery_mode, p.retries, p.timeout_s, p.keep) == (
        "on-close",
        "manual",
        3,
        None,
        50,
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"backup": "hourly"}, "backup mode must be one of on-close, on-write, not 'hourly'"),
        ({"backup": ""}, "backup mode must be one of"),
        ({"recovery": "never"}, "recovery mode must be one of auto, manual, notify, not 'never'"),
        ({"recovery": 1}, "recovery mode must be one of"),
        ({"retries": -1}, f"retries must be an integer from 0 to {MAX_RETRIES}, not -1"),
        ({"retries": MAX_RETRIES + 1}, f"not {MAX_RETRIES + 1}"),
        ({"retries": 2.5}, "retries must be an integer"),
        ({"retries": "3"}, "retries must be an integer from 0 to 100, not '3'"),
        ({"retries": True}, "retries must be an integer"),
        ({"timeout": 0}, "timeout must be a number of seconds above 0"),
        ({"timeout": -5}, "timeout must be a number of seconds above 0 and at most"),
        ({"timeout": MAX_TIMEOUT_S + 1}, f"at most {MAX_TIMEOUT_S}"),
        ({"timeout": "10"}, "timeout must be a number"),
        ({"timeout": True}, "timeout must be a number"),
        ({"timeout": float("nan")}, "timeout must be a number"),
        ({"keep": 0}, f"keep must be an integer from 1 to {MAX_KEEP}, not 0"),
        ({"keep": MAX_KEEP + 1}, "keep must be an integer"),
        ({"keep": 1.0}, "keep must be an integer"),
        ({"keep": False}, "keep must be an integer"),
        ({"colour": "red"}, "unknown policy option 'colour'"),
    ],
)
def test_bad_values_are_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Policy().updated(changes)


def test_validated_checks_direct_construction() -> None:
    with pytest.raises(UsageError, match="backup mode"):
        Policy(backup_mode="on-open").validated()
    with pytest.raises(UsageError, match="keep must be"):
        Policy(keep=-3).validated()


def test_update_maps_api_names_and_keeps_the_rest() -> None:
    base = Policy(recovery_mode="notify", retries=7)
    p = base.updated({"backup": "on-write", "timeout": 12.5, "keep": 9, "retries": None})
    assert p == Policy(
        backup_mode="on-write", recovery_mode="notify", retries=7, timeout_s=12.5, keep=9
    )
    assert base.retries == 7 and base.backup_mode == "on-close"  # frozen, unchanged
    assert Policy().updated({}) == Policy()
    assert Policy().updated({"retries": 0}).retries == 0
    assert Policy().updated({"retries": MAX_RETRIES}).retries == MAX_RETRIES
    assert Policy().updated({"timeout": MAX_TIMEOUT_S}).timeout_s == MAX_TIMEOUT_S
    assert Policy().updated({"keep": 1}).keep == 1


def test_scaled_timeout() -> None:
    assert scaled_timeout(12.5, 10**12, floor=30, rate=1) == 12.5
    assert scaled_timeout(None, 0, floor=30, rate=1000) == 30
    assert scaled_timeout(None, 5000, floor=30, rate=1000) == 35
