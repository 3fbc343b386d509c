"""Naming moments: clear errors for moments that do not exist, history, torn tails."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import filetwin
from filetwin.fileobj import JournaledFile
from tests.helpers import Daemon, wait_until


@pytest.fixture
def journaled(daemon: Daemon, files: Path) -> Path:
    """An on-write file with a few journaled writes, a mark and a good close."""
    f = files / "moments.bin"
    f.write_bytes(b"first")
    daemon.client.add(f, backup="on-write")
    with filetwin.open(f, "r+b", client=daemon.client) as fh:
        fh.seek(5)
        fh.write(b" second")
        assert isinstance(fh, JournaledFile)
        fh.mark("middle")
        fh.write(b" third")
    return f


def restore_fails(daemon: Daemon, f: Path, at: str, message: str, code: int = 1) -> None:
    out = f.with_suffix(".out")
    r = daemon.cli("restore", str(f), "--at", at, "--to", str(out))
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert message in r.stderr, r.stderr
    assert str(f) in r.stderr or at in r.stderr, r.stderr
    assert not out.exists(), "a refused restore wrote nothing"


def test_a_time_before_the_first_version(daemon: Daemon, journaled: Path) -> None:
    restore_fails(daemon, journaled, "2001-01-01T00:00:00Z", "before the first version")
    restore_fails(daemon, journaled, "1000000000", "before the first version")


def test_a_time_in_the_future(daemon: Daemon, journaled: Path) -> None:
    restore_fails(daemon, journaled, str(int(time.time()) + 3600), "in the future")


def test_an_unknown_mark(daemon: Daemon, journaled: Path) -> None:
    restore_fails(daemon, journaled, "mark:nowhere", "no mark named 'nowhere'")
    restore_fails(daemon, journaled, "nowhere", "no mark named 'nowhere'")


def test_a_seq_past_the_end(daemon: Daemon, journaled: Path) -> None:
    last = daemon.client.journal(journaled)["last_seq"]
    restore_fails(daemon, journaled, f"seq:{last + 1}", f"no record {last + 1}")
    restore_fails(daemon, journaled, "seq:nine", "bad sequence number", code=2)


def test_named_moments_restore(daemon: Daemon, journaled: Path) -> None:
    out = journaled.with_suffix(".out")
    for at, want in [
        ("seq:0", b"first"),
        ("mark:middle", b"first second"),
        ("middle", b"first second"),
        ("seq:1", b"first second"),
    ]:
        r = daemon.cli("restore", str(journaled), "--at", at, "--to", str(out))
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == want, at
    r = daemon.cli("restore", str(journaled), "--to", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == b"first second third" == journaled.read_bytes()


def test_history_lists_marks_and_closes_and_flags_a_failed_close(
    daemon: Daemon, journaled: Path
) -> None:
    failed_seq = daemon.client.notify_close(journaled, ok=False)
    r = daemon.cli("history", str(journaled))
    assert r.returncode == 0, r.stderr
    assert "mark 'middle'" in r.stdout
    lines = r.stdout.splitlines()
    failed = [line for line in lines if "close FAILED" in line]
    assert len(failed) == 1 and str(failed_seq) in failed[0], r.stdout
    assert any(" close" in line and "FAILED" not in line for line in lines), r.stdout

    r = daemon.cli("history", str(journaled), "--json", "--journal")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    closes = data["journal"]["closes"]
    assert closes[-1]["seq"] == failed_seq and closes[-1]["ok"] is False
    assert any(c["ok"] is True for c in closes)
    assert [m["name"] for m in data["journal"]["marks"]] == ["middle"]
    assert {"id", "time", "size", "hash", "cause"} <= set(data["versions"][0])
    events = daemon.client.events(journaled)
    assert any(e["kind"] == "close-failed" and not e["ok"] for e in events)

    # Without a daemon, history reads the repository and the journal itself.
    daemon.stop()
    r = daemon.cli("history", str(journaled))
    assert r.returncode == 0, r.stderr
    assert "close FAILED" in r.stdout and "mark 'middle'" in r.stdout


def test_a_torn_journal_tail_is_reported_and_replay_stops_before_it(
    daemon: Daemon, journaled: Path
) -> None:
    want = journaled.read_bytes()
    key_dir = daemon.state_dir / "journals"
    daemon.stop()
    segments = sorted(key_dir.glob("*/*.seg"))
    assert segments
    with segments[-1].open("ab") as seg:
        seg.write(b"\xa5J" + b"garbage that is no record" * 3)
    daemon.start()

    def torn_event() -> bool:
        return any(e["kind"] == "journal-torn" for e in daemon.client.events(journaled))

    wait_until(torn_event, what="a journal-torn event")
    out = journaled.with_suffix(".out")
    daemon.client.restore(journaled, to=out)
    assert out.read_bytes() == want
    # The journal goes on after the torn tail.
    with filetwin.open(journaled, "r+b", client=daemon.client) as fh:
        fh.write(b"F")
    daemon.client.restore(journaled, to=out)
    assert out.read_bytes() == b"F" + want[1:] == journaled.read_bytes()
