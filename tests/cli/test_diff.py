"""`filetwin diff PATH A B` on real versions of a real daemon, and without it."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import blake3

from filetwin.diffing import compare
from tests.helpers import Daemon, wait_until


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def save(d: Daemon, f: Path, data: bytes) -> dict[str, Any]:
    f.write_bytes(data)
    wait_until(lambda: d.client.status(f)["last_good_hash"] == b3(data), what="the version")
    newest: dict[str, Any] = d.client.history(f)[-1]
    return newest


def diff_json(d: Daemon, *args: str) -> dict[str, Any]:
    r = d.cli("diff", *args, "--json")
    assert r.returncode == 0, r.stderr
    result: dict[str, Any] = json.loads(r.stdout)
    return result


def test_text_versions_show_sizes_ranges_and_a_unified_diff(daemon: Daemon, files: Path) -> None:
    f = files / "notes.txt"
    one = b"line one\nline two\nline three\n"
    two = b"line one\nline 2\nline three\nline four\n"
    f.write_bytes(one)
    assert daemon.cli("add", str(f)).returncode == 0
    v1 = daemon.client.history(f)[-1]
    v2 = save(daemon, f, two)

    s = diff_json(daemon, str(f), v1["id"][:8], v2["id"])
    assert (s["a"]["kind"], s["a"]["version"], s["b"]["version"]) == ("version", v1["id"], v2["id"])
    assert (s["a"]["size"], s["b"]["size"], s["size_change"]) == (len(one), len(two), 8)
    assert (s["a"]["hash"], s["b"]["hash"]) == (b3(one), b3(two))
    assert s["same"] is False and s["text"] is True
    # from "two\nline three\n" on, the bytes differ (shifted), then the tail is new
    assert s["ranges"][0][0] == one.index(b"two")
    assert s["ranges"][-1][1] == len(two)
    assert "-line two\n" in s["unified"] and "+line 2\n" in s["unified"]
    assert "+line four\n" in s["unified"]

    r = daemon.cli("diff", str(f), v1["id"], "live")
    assert r.returncode == 0, r.stderr
    assert f"size: {len(one)} -> {len(two)} bytes (+8)" in r.stdout
    assert "@@" in r.stdout and "+line 2" in r.stdout

    same = daemon.cli("diff", str(f), v2["id"], "live")
    assert same.returncode == 0, same.stderr
    assert "same content" in same.stdout


def test_binary_versions_list_merged_byte_ranges(daemon: Daemon, files: Path) -> None:
    f = files / "data.bin"
    base = bytes(range(256)) * 1200  # 307,200 bytes with NULs: not text
    f.write_bytes(base)
    assert daemon.cli("add", str(f)).returncode == 0
    v1 = daemon.client.history(f)[-1]
    changed = bytearray(base)
    changed[1000:1010] = b"\xff" * 10
    changed[200_000] ^= 1
    v2 = save(daemon, f, bytes(changed))
    s = diff_json(daemon, str(f), v1["id"], v2["id"])
    # byte 1000..1009 all differ unless the original already held 0xff there
    want = [r for r in ([1000, 1010], [200_000, 200_001])]
    expect_bytes = sum(1 for i in range(1000, 1010) if base[i] != 0xFF) + 1
    assert s["text"] is False and s["unified"] is None
    assert s["changed_bytes"] == expect_bytes
    assert s["ranges"][-1] == want[1]
    assert s["ranges_total"] == len(s["ranges"])
    capped = diff_json(daemon, str(f), v1["id"], v2["id"], "--ranges", "1")
    assert capped["ranges"] == s["ranges"][:1] and capped["ranges_total"] == s["ranges_total"]
    r = daemon.cli("diff", str(f), v1["id"], v2["id"], "--ranges", "1")
    assert "more ranges" in r.stdout and "not text" in r.stdout


def test_moments_by_time_and_without_a_daemon(daemon: Daemon, files: Path) -> None:
    f = files / "t.txt"
    f.write_bytes(b"first\n")
    assert daemon.cli("add", str(f)).returncode == 0
    v1 = daemon.client.history(f)[-1]
    save(daemon, f, b"second\n")
    daemon.stop()
    # the moment of v1 by its time, against the file as it is: no daemon needed.
    # (1 ms on: history shows times truncated to the millisecond.)
    when = f"{datetime.fromisoformat(v1['time'].replace('Z', '+00:00')).timestamp() + 0.001:.3f}"
    s = diff_json(daemon, str(f), when, "live")
    assert s["a"]["kind"] == "moment" and s["a"]["version"] == v1["id"]
    assert s["b"]["kind"] == "live"
    assert "-first\n" in s["unified"] and "+second\n" in s["unified"]
    explicit = diff_json(daemon, str(f), f"version:{v1['id'][:6]}", f"at:{when}")
    assert explicit["same"] is True


def test_bad_states_are_errors_that_point_at_history(daemon: Daemon, files: Path) -> None:
    f = files / "e.txt"
    f.write_bytes(b"x\n")
    assert daemon.cli("add", str(f)).returncode == 0
    r = daemon.cli("diff", str(f), "deadbeef", "live")
    assert r.returncode == 1
    assert "deadbeef" in r.stderr and "filetwin history" in r.stderr
    r = daemon.cli("diff", str(f), "mark:nope", "live")
    assert r.returncode == 2, r.stderr  # a mark of a file without journal: usage
    assert "no journal" in r.stderr
    r = daemon.cli("diff", str(f), "live")
    assert r.returncode == 2 and "Missing argument" in r.stderr
    f.unlink()
    r = daemon.cli("diff", str(f), daemon.client.history(f)[-1]["id"], "live")
    assert r.returncode == 1 and "does not exist now" in r.stderr
    r = daemon.cli("diff", str(files / "never.txt"), "live", "live")
    assert r.returncode == 1 and "no versions" in r.stderr


def test_compare_streams_of_unequal_chunking() -> None:
    a = [b"abc", b"def", b"ghij"]
    b = [b"abXdefg", b"hij", b"kl"]
    c = compare(a, b)
    assert (c.size_a, c.size_b, c.ranges, c.changed_bytes) == (10, 12, [(2, 3), (10, 12)], 3)
    assert c.text and c.unified[0].startswith("--- a")
    assert compare([b""], []).same
