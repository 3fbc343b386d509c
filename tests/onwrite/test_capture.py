"""Capture without the library: programs that know nothing of filetwin.

The watcher turns each burst of modifications of an on-write file into
journal records (block-hash delta against the daemon's shadow). What it
captures is the file's state at the end of each burst, so these tests check
exactly that: restoring ``--at`` each burst's end (``seq:N`` of its last
record, and the time just after it was captured) gives the file as it was.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import Daemon, wait_until

QUIET_MS = 30


@pytest.fixture
def quick(make_daemon: Callable[..., Daemon]) -> Daemon:
    return make_daemon("capture", capture_quiet_ms=QUIET_MS)


class Bursts:
    """The moments at the end of each captured burst of one file."""

    def __init__(self, daemon: Daemon, path: Path) -> None:
        self.daemon = daemon
        self.path = path
        self.moments: list[tuple[int, float, bytes]] = []

    def last_seq(self) -> int:
        return int(self.daemon.client.journal(self.path)["last_seq"] or 0)

    def captured(self, content: bytes, out: Path) -> bool:
        """True once the newest state the daemon can rebuild is ``content``."""
        self.daemon.client.restore(self.path, to=out)
        return out.read_bytes() == content

    def burst_done(self, before_seq: int) -> None:
        """Wait until the burst that just ended is in the journal; record its end."""
        content = self.path.read_bytes()
        out = self.path.with_suffix(".probe")
        wait_until(
            lambda: self.last_seq() > before_seq and self.captured(content, out),
            what=f"the burst after seq {before_seq} to be captured",
        )
        t = time.time()
        self.moments.append((self.last_seq(), t, content))
        wait_until(lambda: time.time() > t + 0.002, what="the clock to move on")

    def check(self, extra: Callable[[Path, int, str], None] | None = None) -> None:
        """Restore each burst's end by seq and by time; compare bytes (and ``extra``)."""
        # A mark after the last burst: each burst's end time is then inside the
        # journal's span (a time after the last record is refused).
        self.daemon.client.mark(self.path, "end")
        out = self.path.with_suffix(".restored")
        for i, (seq, t, content) in enumerate(self.moments):
            for at in (f"seq:{seq}", t):
                self.daemon.client.restore(self.path, at=at, to=out)
                label = f"burst {i} restored --at {at}"
                assert out.read_bytes() == content, label
                if extra is not None:
                    extra(out, i, label)


def test_dd_conv_notrunc(quick: Daemon, files: Path) -> None:
    f = files / "disk.img"
    f.write_bytes(bytes(range(256)) * 64)  # 16 KiB
    quick.client.add(f, backup="on-write")
    bursts = Bursts(quick, f)
    writes = [(100, b"A" * 10), (8192, b"B" * 5000), (20_000, b"C" * 300), (4095, b"D" * 2)]
    for i, (offset, data) in enumerate(writes):
        src = files / f"src{i}"
        src.write_bytes(data)
        before = bursts.last_seq()
        r = subprocess.run(
            [
                "dd",
                f"if={src}",
                f"of={f}",
                "bs=4096",
                f"seek={offset}",
                "oflag=seek_bytes",
                "conv=notrunc",
                "status=none",
            ],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
        bursts.burst_done(before)
    assert len(f.read_bytes()) == 20_300
    bursts.check()
    closes = quick.client.journal(f)["closes"]
    assert len(closes) >= len(writes) and all(c["ok"] for c in closes)


PLAIN_WRITER = textwrap.dedent(
    """
    import sys
    path, step = sys.argv[1], int(sys.argv[2])
    if step == 0:
        with open(path, "r+b") as f:
            f.seek(10); f.write(b"first")
            f.seek(9000); f.write(b"x" * 7000)
    elif step == 1:
        with open(path, "ab") as f:
            f.write(b"appended" * 100)
    elif step == 2:
        with open(path, "r+b") as f:
            f.truncate(5000); f.seek(4000); f.write(b"y" * 500)
    else:
        with open(path, "wb") as f:
            f.write(b"rewritten whole")
    """
)


def test_python_program_with_plain_open(quick: Daemon, files: Path) -> None:
    f = files / "plain.dat"
    f.write_bytes(b"." * 12_000)
    quick.client.add(f, backup="on-write")
    bursts = Bursts(quick, f)
    for step in range(4):
        before = bursts.last_seq()
        r = subprocess.run(
            [sys.executable, "-c", PLAIN_WRITER, str(f), str(step)],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
        bursts.burst_done(before)
    assert f.read_bytes() == b"rewritten whole"
    bursts.check()


def test_sqlite_transactions(quick: Daemon, files: Path) -> None:
    db = files / "app.db"
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete"
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        con.commit()
        quick.client.add(db, backup="on-write")
        bursts = Bursts(quick, db)
        counts = []
        rows = 0
        for txn in range(5):
            before = bursts.last_seq()
            n = 20 + 40 * txn  # later transactions spill onto new pages
            con.executemany(
                "INSERT INTO t (body) VALUES (?)",
                [(f"txn {txn} row {i} " + "z" * (i % 200),) for i in range(n)],
            )
            con.commit()
            rows += n
            counts.append(rows)
            bursts.burst_done(before)
    finally:
        con.close()

    def integral(out: Path, i: int, label: str) -> None:
        check = sqlite3.connect(out)
        try:
            assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok", label
            got = check.execute("SELECT count(*) FROM t").fetchone()[0]
        finally:
            check.close()
        assert got == counts[i], label

    assert len(bursts.moments) == len(counts)
    bursts.check(integral)
