"""Nothing invented, nothing misread: open-time truncation, damaged journals,
records no file system can hold, and restores at any past time."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import filetwin
from filetwin.errors import FiletwinError, UsageError
from filetwin.repo.journal import HEADER_SIZE, RECORD_OVERHEAD
from filetwin.repo.moments import journal_dir
from tests.helpers import Daemon, wait_until


def restored(daemon: Daemon, f: Path, at: str | None = None) -> bytes:
    out = f.with_suffix(".restored")
    daemon.client.restore(f, at=at, to=out)
    return out.read_bytes()


def checkpoints(daemon: Daemon, f: Path) -> int:
    return sum(v["cause"] == "checkpoint" for v in daemon.client.history(f))


# item 3: the truncation of "wb" / "w+b" is journaled ---------------------------
@pytest.mark.parametrize("mode", ["wb", "w+b", "w"])
def test_open_for_writing_journals_its_truncation(daemon: Daemon, files: Path, mode: str) -> None:
    f = files / "rewritten.bin"
    f.write_bytes(b"A" * 1000)
    daemon.client.add(f, backup="on-write", sync="always")
    with filetwin.open(f, mode, client=daemon.client) as fh:
        fh.write(b"short" if "b" in mode else "short")
        last_write = daemon.client.journal(f)["last_seq"]
    assert f.read_bytes() == b"short"
    assert restored(daemon, f, f"seq:{last_write}") == b"short"
    wait_until(lambda: checkpoints(daemon, f) >= 1, what="the close's checkpoint")
    assert restored(daemon, f) == b"short"
    # The moment between the open and the write: the file was empty.
    assert restored(daemon, f, f"seq:{last_write - 1}") == b""


def test_open_for_appending_journals_no_truncation(daemon: Daemon, files: Path) -> None:
    f = files / "appended.bin"
    f.write_bytes(b"A" * 100)
    daemon.client.add(f, backup="on-write")
    before = daemon.client.journal(f)["last_seq"] or 0
    with filetwin.open(f, "ab", client=daemon.client) as fh:
        fh.write(b"tail")
    records = daemon.client.journal(f)
    assert records["writes"] == 1 and records["last_seq"] == before + 2  # write, close
    assert restored(daemon, f) == b"A" * 100 + b"tail" == f.read_bytes()


# item 4: a damaged journal ---------------------------------------------------
def _writes(daemon: Daemon, f: Path, count: int, fill: bytes) -> list[int]:
    """``count`` journaled 1-byte writes at offsets 0.. (also made to the file)."""
    seqs = []
    with f.open("r+b") as fh:
        for i in range(count):
            seqs.append(daemon.client.notify_write(f, i, fill))
            fh.seek(i)
            fh.write(fill)
    return seqs


def _record_end(segment: Path, records: int, payload: int = 1) -> int:
    """Byte offset just past the first ``records`` 1-byte write records."""
    return HEADER_SIZE + records * (RECORD_OVERHEAD + payload)


def test_a_truncated_segment_and_a_restart_never_reuse_covered_seqs(
    daemon: Daemon, files: Path
) -> None:
    f = files / "damaged.bin"
    f.write_bytes(b"." * 64)
    daemon.client.add(f, backup="on-write")
    _writes(daemon, f, 29, b"a")
    assert daemon.client.notify_close(f) == 30
    wait_until(lambda: checkpoints(daemon, f) == 1, what="the checkpoint at seq 30")
    jdir = journal_dir(daemon.state_dir / "journals", str(f))
    first, *later = sorted(jdir.glob("*.seg"))
    daemon.stop()
    with first.open("r+b") as seg:
        seg.truncate(_record_end(first, 14) + 7)  # records 1..14 whole, 15 torn
    for seg_path in later:  # what came after is lost too
        seg_path.unlink()
    daemon.start()
    seqs = _writes(daemon, f, 30, b"N")
    assert min(seqs) > 30, f"new writes reuse seqs a checkpoint covers: {seqs[:3]}..."
    for i, seq in enumerate(seqs):
        want = b"N" * (i + 1) + b"a" * max(0, 28 - i) + b"." * (64 - max(29, i + 1))
        assert restored(daemon, f, f"seq:{seq}") == want, f"write {i} at seq {seq}"
    daemon.client.notify_close(f)
    wait_until(lambda: checkpoints(daemon, f) == 2, what="a checkpoint after the new writes")
    assert restored(daemon, f) == f.read_bytes() == b"N" * 30 + b"." * 34
    # The damaged stretch cannot be rebuilt, and says so.
    r = daemon.cli("restore", str(f), "--at", "seq:20", "--to", str(files / "x"))
    assert r.returncode == 1 and "valid only up to record 14" in r.stderr, r.stderr


def test_restore_past_a_damaged_stretch_fails_clearly(daemon: Daemon, files: Path) -> None:
    f = files / "stretch.bin"
    f.write_bytes(b"." * 64)
    daemon.client.add(f, backup="on-write")
    _writes(daemon, f, 39, b"a")
    daemon.client.notify_close(f)  # seq 40, checkpoint at 40
    wait_until(lambda: checkpoints(daemon, f) == 1, what="the checkpoint at seq 40")
    jdir = journal_dir(daemon.state_dir / "journals", str(f))
    first = sorted(jdir.glob("*.seg"))[0]
    with first.open("r+b") as seg:  # no restart: the daemon keeps its writer
        seg.truncate(_record_end(first, 14) + 3)
    out = files / "at30.bin"
    r = daemon.cli("restore", str(f), "--at", "seq:30", "--to", str(out))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "valid only up to record 14" in r.stderr, r.stderr
    assert not out.exists()
    assert restored(daemon, f, "seq:14") == b"a" * 14 + b"." * 50
    assert restored(daemon, f, "seq:40") == b"a" * 39 + b"." * 25


# item 7: records no file system can hold -------------------------------------
def test_a_huge_truncate_or_write_is_refused_at_the_boundary(daemon: Daemon, files: Path) -> None:
    f = files / "bounded.bin"
    f.write_bytes(b"0123456789")
    daemon.client.add(f, backup="on-write")
    stream = daemon.client.open_stream(f)
    with pytest.raises(FiletwinError, match=str(2**62)):
        stream.send("truncate", 2**62)
    stream.close()
    with pytest.raises(UsageError, match=str(2**62)):
        daemon.client.notify_truncate(f, 2**62)
    with pytest.raises(UsageError, match=str(2**62)):
        daemon.client.notify_write(f, 2**62, b"x")
    with pytest.raises(UsageError, match=str(2**50)):
        daemon.client.notify_write(f, 2**50, b"xyz")
    # The entry is not poisoned: later records checkpoint and restore.
    daemon.client.notify_write(f, 0, b"AB")
    with f.open("r+b") as fh:
        fh.write(b"AB")
    daemon.client.notify_close(f)
    wait_until(lambda: checkpoints(daemon, f) == 1, what="a checkpoint")
    assert not [e for e in daemon.client.events(f) if e["kind"] == "checkpoint-failed"]
    assert restored(daemon, f) == b"AB23456789"


# issue 9: restore --at a time ------------------------------------------------
def test_a_past_time_after_the_last_record_gives_the_newest_state(
    daemon: Daemon, files: Path
) -> None:
    f = files / "then.bin"
    f.write_bytes(b"one")
    daemon.client.add(f, backup="on-write")
    daemon.client.notify_write(f, 0, b"two")
    f.write_bytes(b"two")
    last = daemon.client.journal(f)["last_seq"]
    t = time.time()
    wait_until(lambda: time.time() > t + 0.05, what="the clock to move on")
    out = files / "then.out"
    r = daemon.cli("restore", str(f), "--at", str(time.time()), "--to", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert "newest" in json.loads(r.stdout)["moment"]
    assert out.read_bytes() == b"two"
    result = daemon.client.restore(f, at=time.time(), to=out)
    assert result["journal_seq"] == last
    assert "newest" in result["moment"] and f"seq {last}" in result["moment"], result


def test_a_time_in_the_future_or_before_the_first_version_is_refused(
    daemon: Daemon, files: Path
) -> None:
    f = files / "when.bin"
    f.write_bytes(b"one")
    daemon.client.add(f, backup="on-write")
    out = files / "when.out"
    r = daemon.cli("restore", str(f), "--at", str(int(time.time()) + 3600), "--to", str(out))
    assert r.returncode == 1 and "in the future" in r.stderr, r.stderr
    assert "filetwin history" in r.stderr
    r = daemon.cli("restore", str(f), "--at", "2001-01-01T00:00:00Z", "--to", str(out))
    assert r.returncode == 1 and "before the first version" in r.stderr, r.stderr
    assert "filetwin history" in r.stderr
    assert not out.exists()


def test_a_time_names_the_capture_point_that_answered(quick_daemon: Daemon, files: Path) -> None:
    f = files / "captured.bin"
    f.write_bytes(b"x" * 100)
    quick_daemon.client.add(f, backup="on-write")
    with f.open("r+b") as fh:  # a program that knows nothing of filetwin
        fh.write(b"yy")
    wait_until(
        lambda: (quick_daemon.client.journal(f)["last_seq"] or 0) >= 2,
        what="the watcher's capture",
    )
    summary = quick_daemon.client.journal(f)
    t = time.time()
    result = quick_daemon.client.restore(f, at=t, to=files / "c.out")
    assert (files / "c.out").read_bytes() == b"yy" + b"x" * 98
    assert f"seq {summary['last_seq']}" in result["moment"], result
    assert summary["last_time"][:19] in json.dumps(result), result


@pytest.fixture
def quick_daemon(make_daemon: object) -> Daemon:
    return make_daemon("quick", capture_quiet_ms=30)  # type: ignore[operator, no-any-return]
