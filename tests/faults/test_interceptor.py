"""Faults met through the interceptor (`filetwin mount`): a failed close of an
on-write file, and an SQLite database whose block goes bad on btrfs."""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.faultfs import Btrfs
from tests.faults.conftest import FAST, event, follows, kinds, protect, quarantined
from tests.helpers import Daemon, wait_until


def test_failed_close_restores_the_journaled_writes(
    make_daemon: Callable[..., Daemon], mounted: Callable[..., Path], files: Path
) -> None:
    daemon = make_daemon("state", **FAST)
    f = files / "app.bin"
    f.write_bytes(os.urandom(50_000))
    protect(daemon, f, "on-write", "auto")
    mnt = mounted(daemon, files, "close:*app.bin")
    new = os.urandom(300_000)
    fh = (mnt / f.name).open("wb")
    fh.write(new)
    with pytest.raises(OSError) as info:
        fh.close()
    assert info.value.errno == errno.EIO
    wait_until(lambda: f.read_bytes() == new, what="the journaled writes to be restored")
    wait_until(lambda: follows(kinds(daemon, f), "close-failed", "healed"), what="the heal")
    # What the failing disk left (the writes since the open lost) is kept aside.
    [(copy, _note)] = quarantined(daemon)
    assert copy.read_bytes() == b""
    closes = daemon.client.journal(f)["closes"]
    assert [c["ok"] for c in closes] == [False], closes  # one close, recorded as failed
    assert (mnt / f.name).read_bytes() == new


def test_sqlite_through_the_interceptor_survives_a_bad_block(
    btrfs: Btrfs,
    make_daemon: Callable[..., Daemon],
    mounted: Callable[..., Path],
) -> None:
    daemon = make_daemon("state", **FAST)
    db = btrfs.mount / "app.db"
    db.touch()
    protect(daemon, db, "on-write", "auto")
    mnt = mounted(daemon, btrfs.mount)

    conn = sqlite3.connect(mnt / db.name)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, blob BLOB NOT NULL)")
    conn.commit()
    rows = 0
    for _txn in range(8):
        with conn:  # one committed transaction each
            conn.executemany(
                "INSERT INTO t (blob) VALUES (?)", [(os.urandom(1024),) for _ in range(30)]
            )
        rows += 30
    conn.close()
    assert db.stat().st_size >= 200 * 1024

    def folded() -> bool:
        last = daemon.client.journal(db)["last_seq"]
        versions = daemon.client.history(db)
        return bool(last) and versions[-1].get("journal_seq", 0) == last

    wait_until(folded, what="a checkpoint of the whole journal")

    btrfs.corrupt(db)
    conn = sqlite3.connect(mnt / db.name)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (rows,)
    finally:
        conn.close()
    healed = event(daemon, db, "healed")
    assert healed is not None and "through the interceptor" in healed["message"]
    [(_copy, note)] = quarantined(daemon)
    assert note["unreadable"], note
    with sqlite3.connect(db) as direct:  # the file itself is whole again
        assert direct.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert direct.execute("SELECT count(*) FROM t").fetchone() == (rows,)
    direct.close()


def test_handles_opened_before_a_heal_read_the_healed_file(
    btrfs: Btrfs,
    make_daemon: Callable[..., Daemon],
    mounted: Callable[..., Path],
) -> None:
    """Two readers had the damaged file open: the first one's error heals it,
    the second reads the healed file too, without a second heal."""
    daemon = make_daemon("state", **FAST)
    f = btrfs.mount / "shared.bin"
    content = os.urandom(256 * 1024)
    f.write_bytes(content)
    protect(daemon, f, "on-close", "auto")
    mnt = mounted(daemon, btrfs.mount)
    btrfs.corrupt(f)
    with (mnt / f.name).open("rb") as first, (mnt / f.name).open("rb") as second:
        assert first.read() == content
        # Make the second reader's reads reach the interceptor, not the page cache.
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        assert second.read() == content
    assert kinds(daemon, f).count("healed") == 1
    assert len(quarantined(daemon)) == 1


@pytest.mark.parametrize("backup", ["on-close", "on-write"])
def test_a_write_into_a_bad_block_is_healed_and_retried(
    btrfs: Btrfs,
    make_daemon: Callable[..., Daemon],
    mounted: Callable[..., Path],
    backup: str,
) -> None:
    """A small write into the damaged block needs its old bytes (read-modify-write):
    it fails with EIO on SOURCE; the interceptor heals the file and writes again."""
    daemon = make_daemon("state", **FAST)
    f = btrfs.mount / "patched.bin"
    content = os.urandom(256 * 1024)
    f.write_bytes(content)
    protect(daemon, f, backup, "auto")
    mnt = mounted(daemon, btrfs.mount)
    bad = btrfs.corrupt(f)
    at = bad + 100
    with (mnt / f.name).open("r+b", buffering=0) as fh:
        fh.seek(at)
        assert fh.write(b"patched") == 7
    want = content[:at] + b"patched" + content[at + 7 :]
    assert f.read_bytes() == want
    assert (mnt / f.name).read_bytes() == want
    healed = event(daemon, f, "healed")
    assert healed is not None and "through the interceptor" in healed["message"]
    [(_copy, note)] = quarantined(daemon)
    assert note["unreadable"] == [[bad, 4096]]


def test_io_passes_through_when_the_daemon_is_gone(
    make_daemon: Callable[..., Daemon], mounted: Callable[..., Path], files: Path
) -> None:
    daemon = make_daemon("state", **FAST)
    f = files / "kept.bin"
    f.write_bytes(b"before\n")
    plain = files / "plain.txt"
    protect(daemon, f, "on-write", "auto")
    mnt = mounted(daemon, files)
    with (mnt / f.name).open("ab") as fh:
        fh.write(b"journaled\n")
    wait_until(lambda: daemon.client.journal(f)["writes"] >= 1, what="the journaled write")
    daemon.stop()
    # No daemon: the application's I/O still goes through, on entries and other files.
    with (mnt / f.name).open("ab") as fh:
        fh.write(b"not journaled\n")
    (mnt / plain.name).write_text("unprotected\n")
    assert f.read_bytes() == b"before\njournaled\nnot journaled\n"
    assert plain.read_text() == "unprotected\n"
    assert (mnt / f.name).read_bytes() == f.read_bytes()
