"""Checkpoints, segments and retention; sync modes; on-close entries and the library."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

import filetwin
from filetwin.repo.moments import journal_dir
from tests.helpers import Daemon, wait_until


def segments(daemon: Daemon, f: Path) -> list[Path]:
    return sorted(journal_dir(daemon.state_dir / "journals", str(f)).glob("*.seg"))


def causes(daemon: Daemon, f: Path) -> list[str]:
    return [v["cause"] for v in daemon.client.history(f)]


def write_blocks(daemon: Daemon, f: Path, start: int, count: int) -> list[tuple[int, bytes]]:
    """``count`` journaled writes in one open (no close in between); (seq, content) after each."""
    moments = []
    fh = filetwin.open(f, "r+b", client=daemon.client)
    try:
        for i in range(start, start + count):
            fh.seek(i * 10)
            fh.write(b"%09d\n" % i)
            moments.append((daemon.client.journal(f)["last_seq"], f.read_bytes()))
    finally:
        fh.close()
    return moments


def test_a_record_threshold_makes_checkpoints_and_new_segments(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    d = make_daemon("cp", checkpoint_records=5)
    f = files / "long.log"
    f.write_bytes(b"")
    d.client.add(f, backup="on-write")
    assert len(segments(d, f)) <= 1
    fh = filetwin.open(f, "r+b", client=d.client)
    moments = [(0, b"")]
    seen_segments: set[str] = set()
    for i in range(12):
        fh.write(b"line %02d\n" % i)
        moments.append((d.client.journal(f)["last_seq"], f.read_bytes()))
        seen_segments |= {p.name for p in segments(d, f)}
    # No close yet: the checkpoints come from the record threshold alone.
    wait_until(lambda: causes(d, f).count("checkpoint") >= 2, what="two checkpoints")
    seen_segments |= {p.name for p in segments(d, f)}
    assert len(seen_segments) > 1, "the journal goes on in a new segment after a checkpoint"
    history = d.client.history(f)
    seqs = [int(v.get("journal_seq") or 0) for v in history if v["cause"] == "checkpoint"]
    assert seqs == sorted(seqs) and all(s >= 5 for s in seqs), history
    fh.close()
    out = files / "out.log"
    for seq, content in moments:
        d.client.restore(f, at=f"seq:{seq}", to=out)
        assert out.read_bytes() == content, f"seq:{seq}"
    # The good close folds the rest of the journal into a last checkpoint.
    last = d.client.journal(f)["last_seq"]
    wait_until(
        lambda: d.client.history(f)[-1].get("journal_seq") == last, what="the close's checkpoint"
    )
    assert d.client.history(f)[-1]["cause"] == "checkpoint"


def test_retention_drops_segments_no_kept_version_needs(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    d = make_daemon("keep", checkpoint_records=5)
    f = files / "kept.log"
    f.write_bytes(b"")
    d.client.add(f, backup="on-write", keep=2)
    moments = [(0, b"")]
    for round_ in range(4):
        moments += write_blocks(d, f, round_ * 6, 6)
        last: int = moments[-1][0]

        def folded(last: int = last) -> bool:
            return int(d.client.history(f)[-1].get("journal_seq") or 0) >= last

        wait_until(folded, what=f"round {round_}'s close checkpoint")
    wait_until(lambda: len(d.client.history(f)) == 2, what="retention to keep 2 versions")
    oldest = d.client.history(f)[0]
    kept_from = oldest["journal_seq"]
    assert kept_from > 0
    first_seg_seq = int(segments(d, f)[0].name[:20])
    assert first_seg_seq > 1, "the first segments are dropped"
    assert first_seg_seq <= kept_from + 1, "a segment the oldest kept version needs is kept"
    out = files / "out.log"
    for seq, content in moments:
        if seq < kept_from:
            r = d.cli("restore", str(f), "--at", f"seq:{seq}", "--to", str(out))
            assert r.returncode == 1 and str(f) in r.stderr, (seq, r.stderr)
            continue
        d.client.restore(f, at=f"seq:{seq}", to=out)
        assert out.read_bytes() == content, f"seq:{seq}"
    check = d.cli("check", "--read-data")
    assert check.returncode == 0, check.stderr


def test_sync_always(daemon: Daemon, files: Path) -> None:
    f = files / "always.db"
    f.write_bytes(b"zzzz")
    daemon.client.add(f, backup="on-write", sync="always")
    assert daemon.client.status(f)["sync_mode"] == "always"
    with filetwin.open(f, "r+b", client=daemon.client) as fh:
        fh.write(b"ab")
        seq = daemon.client.journal(f)["last_seq"]
        fh.write(b"cd")
    out = files / "out"
    daemon.client.restore(f, at=f"seq:{seq}", to=out)
    assert out.read_bytes() == b"abzz"
    daemon.client.restore(f, to=out)
    assert out.read_bytes() == b"abcd" == f.read_bytes()
    r = daemon.cli("update", str(f), "--sync", "batch")
    assert r.returncode == 0, r.stderr
    assert daemon.client.status(f)["sync_mode"] == "batch"


def test_update_to_on_write_starts_journaling(daemon: Daemon, files: Path) -> None:
    f = files / "switch.txt"
    f.write_bytes(b"before")
    daemon.client.add(f)
    assert daemon.client.status(f)["backup_mode"] == "on-close"
    r = daemon.cli("update", str(f), "--backup", "on-write")
    assert r.returncode == 0, r.stderr
    assert daemon.client.status(f)["backup_mode"] == "on-write"
    with filetwin.open(f, "r+b", client=daemon.client) as fh:
        assert not isinstance(fh, io.BufferedRandom)  # the journaled file object
        fh.seek(6)
        fh.write(b" after")
    journal = daemon.client.journal(f)
    assert journal["writes"] >= 1 and journal["last_seq"] is not None
    out = files / "out"
    daemon.client.restore(f, at=f"seq:{journal['closes'][0]['seq'] - 1}", to=out)
    assert out.read_bytes() == b"before after"


def test_on_close_entry_through_filetwin_open(daemon: Daemon, files: Path) -> None:
    f = files / "plain.txt"
    f.write_text("one\n")
    daemon.client.add(f)
    assert len(daemon.client.history(f)) == 1
    with filetwin.open(f, "a", client=daemon.client) as fh:
        assert isinstance(fh, io.TextIOWrapper)
        assert not hasattr(fh.buffer, "mark"), "an on-close entry gets the built-in file"
        fh.write("two\n")
    wait_until(lambda: causes(daemon, f)[-1:] == ["close"], what="the close's version")
    assert daemon.client.history(f)[-1]["size"] == 8
    assert daemon.client.journal(f)["last_seq"] is None


def test_reports_on_an_on_close_entry_are_refused(daemon: Daemon, files: Path) -> None:
    f = files / "closed.txt"
    f.write_text("x")
    daemon.client.add(f)
    for call in (
        lambda: daemon.client.notify_write(f, 0, b"y"),
        lambda: daemon.client.mark(f, "m"),
    ):
        with pytest.raises(filetwin.errors.UsageError, match="on-close entry"):
            call()
    # A close result is taken (a failed one matters to an on-close entry too),
    # but nothing is journaled: there is no journal.
    assert daemon.client.notify_close(f, ok=True) == 0
    with pytest.raises(filetwin.errors.FiletwinError, match="on-close"):
        daemon.client.open_stream(f)
    assert f.read_text() == "x"
    assert causes(daemon, f) == ["initial"]
