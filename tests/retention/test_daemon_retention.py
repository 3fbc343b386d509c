"""Time-based retention through a real daemon: versions beyond the rules go,
the kept ones restore bit for bit, what a restore kept aside survives, and bad
values change nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3

from tests.helpers import Daemon, wait_until

WITHIN_S = 5


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def ts(iso_time: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()


def history(d: Daemon, f: Path) -> list[dict[str, Any]]:
    r = d.cli("history", str(f), "--json")
    assert r.returncode == 0, r.stderr
    versions: list[dict[str, Any]] = json.loads(r.stdout)
    return versions


def save(d: Daemon, f: Path, data: bytes) -> None:
    f.write_bytes(data)
    wait_until(lambda: d.client.status(f)["last_good_hash"] == b3(data), what=f"{data!r} stored")


def clock_past(t: float) -> None:
    """Wait for the wall clock itself: the rule under test is about the versions'
    ages, so the versions made after this must be that much younger."""
    wait_until(lambda: time.time() > t, timeout=WITHIN_S + 10, what="the clock to move on")


def test_keep_within_removes_older_versions_and_kept_ones_restore(
    make_daemon: Callable[..., Daemon], files: Path, tmp_path: Path
) -> None:
    d = make_daemon("within", gc_delay_s=0.2)
    f = files / "notes.txt"
    contents = [f"state {i}\n".encode() * (i + 1) for i in range(5)]
    f.write_bytes(contents[0])
    r = d.cli("add", str(f), "--keep-within", "1h", "--keep-daily", "7", "--json")
    assert r.returncode == 0, r.stderr
    entry = json.loads(r.stdout)["entries"][0]
    assert (entry["keep_within_s"], entry["keep_daily"], entry["keep_hourly"]) == (3600, 7, 0)
    save(d, f, contents[1])
    old = history(d, f)
    assert [v["hash"] for v in old] == [b3(contents[0]), b3(contents[1])]

    clock_past(ts(old[-1]["time"]) + WITHIN_S + 1)
    save(d, f, contents[2])
    save(d, f, contents[3])
    # Nothing older than an hour and one version a day: all four stay.
    assert len(history(d, f)) == 4

    r = d.cli("update", str(f), "--keep", "1", "--keep-within", f"{WITHIN_S}s", "--keep-daily", "0")
    assert r.returncode == 0, r.stderr
    status = json.loads(d.cli("status", str(f), "--json").stdout)
    row = status[0] if isinstance(status, list) else status
    assert (row["keep"], row["keep_within_s"], row["keep_daily"]) == (1, WITHIN_S, 0)
    # The update applies at once: the two versions older than 5 s before the newest go.
    wait_until(lambda: len(history(d, f)) == 2, what="retention to the last 5 s")
    kept = history(d, f)
    assert [v["hash"] for v in kept] == [b3(contents[2]), b3(contents[3])]
    assert d.client.status(f)["versions"] == 2
    for v, data in zip(kept, contents[2:4], strict=True):
        out = tmp_path / f"out-{v['id']}"
        r = d.cli("restore", str(f), "--version", v["id"], "--to", str(out))
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == data
    gone = d.cli("restore", str(f), "--version", old[0]["id"], "--to", str(tmp_path / "x"))
    assert gone.returncode == 1
    assert "filetwin history" in gone.stderr

    # An in-place restore keeps the replaced content aside; however old that
    # version gets, it stays while it is the newest a restore kept aside.
    r = d.cli("restore", str(f), "--version", kept[0]["id"], "--json")
    assert r.returncode == 0, r.stderr
    aside = json.loads(r.stdout)["kept_version"]
    assert aside
    clock_past(time.time() + WITHIN_S + 1)
    save(d, f, contents[4])
    versions = wait_until(
        lambda: (h := history(d, f)) and len(h) <= 3 and h, what="retention after the new save"
    )
    assert aside in [v["id"] for v in versions]
    assert versions[-1]["hash"] == b3(contents[4])
    out = tmp_path / "aside"
    r = d.cli("restore", str(f), "--version", aside, "--to", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == contents[3]
    check = d.cli("check", "--read-data")
    assert check.returncode == 0, check.stderr


def test_bad_retention_values_are_usage_errors_that_change_nothing(
    daemon: Daemon, files: Path
) -> None:
    f = files / "a.txt"
    f.write_text("a\n")
    assert daemon.cli("add", str(f), "--keep-within", "2w").returncode == 0
    before = daemon.client.status(f)
    for args, word in [
        (["--keep-within", "7x"], "keep-within"),
        (["--keep-within", "-1d"], "keep-within"),
        (["--keep-daily", "-1"], "keep-daily"),
        (["--keep-hourly", "many"], "keep-hourly"),
        (["--keep-monthly", "100001"], "keep-monthly"),
    ]:
        r = daemon.cli("update", str(f), *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert word in r.stderr, r.stderr
        g = files / "new.txt"
        g.write_text("new\n")
        r = daemon.cli("add", str(g), *args)
        assert r.returncode == 2, (args, r.stderr)
    after = daemon.client.status(f)
    assert after["keep_within_s"] == before["keep_within_s"] == 14 * 86400
    assert [e["path"] for e in daemon.client.status()] == [str(f)]
    # The API refuses the same values with the policy's own words, also unchanged.
    from filetwin.errors import UsageError

    for field, value in [("keep_within", "7x"), ("keep_daily", -1), ("keep_weekly", "3")]:
        try:
            daemon.client.update(f, **{field: value})
        except UsageError as e:
            assert field.replace("_", "-") in e.message or field in e.message, e.message
        else:
            raise AssertionError(f"{field}={value!r} was accepted")
    assert daemon.client.status(f) == after
