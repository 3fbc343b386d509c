"""`filetwin mount --in-place DIR`: unmodified programs on their usual paths.

Real programs (dd, a shell redirect, SQLite in another process) write the
real path under an in-place mount; every write is journaled exactly; a
damaged btrfs block reads as the good bytes; a SIGKILLed interceptor leaves
no dead mount once the daemon's supervisor has looked; an unmount gives the
directory back as it was.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.faultfs import Btrfs
from filetwin.capture.inplace import allow_other_permitted
from filetwin.config import Config
from filetwin.daemon.mounts import Mounts, dead
from tests.faults.conftest import FAST, event, protect, quarantined
from tests.helpers import Daemon, wait_until
from tests.mount.conftest import InPlace, is_inplace_mount, listing


def restored_at(daemon: Daemon, path: Path, seq: int, tmp: Path) -> bytes:
    dest = tmp / f"at-{seq}.bin"
    daemon.client.restore(path, at=f"seq:{seq}", to=dest)
    data = dest.read_bytes()
    dest.unlink()
    return data


def last_seq(daemon: Daemon, path: Path) -> int:
    return int(daemon.client.journal(path)["last_seq"] or 0)


def test_dd_and_a_shell_redirect_are_journaled_write_by_write(
    make_daemon: Callable[..., Daemon],
    in_place: Callable[..., InPlace],
    files: Path,
    tmp_path: Path,
) -> None:
    daemon = make_daemon("state", **FAST)
    f = files / "data.bin"
    content = bytearray(os.urandom(64 * 1024))
    f.write_bytes(content)
    protect(daemon, f, "on-write", "manual")
    in_place(daemon, files)
    base = last_seq(daemon, f)

    # dd: three 1000-byte writes at 3000, 4000, 5000, without truncating.
    patch = tmp_path / "patch.bin"
    patch.write_bytes(os.urandom(3000))
    subprocess.run(
        ["dd", f"if={patch}", f"of={f}", "bs=1000", "seek=3", "conv=notrunc", "status=none"],
        check=True,
    )
    states = []
    for i in range(3):
        content[3000 + 1000 * i : 4000 + 1000 * i] = patch.read_bytes()[1000 * i : 1000 * (i + 1)]
        states.append(bytes(content))
    # A shell redirect: one append.
    subprocess.run(["sh", "-c", f"echo appended >> '{f}'"], check=True)
    content += b"appended\n"
    states.append(bytes(content))

    assert f.read_bytes() == bytes(content)
    # dd's second write straddles a page: the kernel hands it to the
    # interceptor as two writes, so 4 records, a close, then sh's write and close.
    wait_until(lambda: last_seq(daemon, f) == base + 7, what="the seven records")
    journal = daemon.client.journal(f)
    assert journal["writes"] == 5, journal
    assert [(c["seq"], c["ok"]) for c in journal["closes"]] == [(base + 5, True), (base + 7, True)]
    at = {seq: restored_at(daemon, f, seq, tmp_path) for seq in range(base + 1, base + 8)}
    # Every state a program's write left is a moment of the journal, in order.
    assert [at[base + 1], at[base + 3], at[base + 4], at[base + 6]] == states
    assert at[base + 2] == states[0][:4000] + states[1][4000:4096] + states[0][4096:]
    assert at[base + 7] == bytes(content)


def test_sqlite_in_another_process_is_journaled_exactly(
    make_daemon: Callable[..., Daemon],
    in_place: Callable[..., InPlace],
    files: Path,
    tmp_path: Path,
) -> None:
    daemon = make_daemon("state", **FAST)
    db = files / "app.db"
    db.touch()
    protect(daemon, db, "on-write", "manual")
    in_place(daemon, files)
    script = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1])\n"
        "c.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)')\n"
        "for i in range(5):\n"
        "    with c:\n"
        "        c.execute('INSERT INTO t (v) VALUES (?)', (f'row {i}' * 200,))\n"
        "c.close()\n"
    )
    subprocess.run([sys.executable, "-c", script, str(db)], check=True)
    live = db.read_bytes()
    wait_until(
        lambda: (
            daemon.client.journal(db)["closes"] and daemon.client.journal(db)["closes"][-1]["ok"]
        ),
        what="the database's closes",
    )
    seq = last_seq(daemon, db)
    got = restored_at(daemon, db, seq, tmp_path)
    assert got == live
    copy = tmp_path / "copy.db"
    copy.write_bytes(got)
    with sqlite3.connect(copy) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (5,)
    conn.close()
    assert daemon.client.journal(db)["writes"] >= 5


def test_a_damaged_block_reads_as_the_good_bytes_on_the_real_path(
    btrfs: Btrfs, make_daemon: Callable[..., Daemon], in_place: Callable[..., InPlace]
) -> None:
    daemon = make_daemon("state", **FAST)
    f = btrfs.mount / "heal.bin"
    content = os.urandom(1 << 20)
    f.write_bytes(content)
    protect(daemon, f, "on-close", "auto")
    bad = btrfs.corrupt(f)  # before the mount: corrupt() checks the EIO itself
    in_place(daemon, btrfs.mount)
    assert f.read_bytes() == content  # the usual path, through the interceptor
    healed = event(daemon, f, "healed")
    assert healed is not None and "through the interceptor" in healed["message"]
    [(_copy, note)] = quarantined(daemon)
    assert note["unreadable"] == [[bad, 4096]]


def supervise(daemon: Daemon) -> tuple[Mounts, list[tuple[Any, ...]]]:
    events: list[tuple[Any, ...]] = []
    mounts = Mounts(Config.load(state_dir=daemon.state_dir), lambda *e: events.append(e))
    return mounts, events


def test_a_killed_interceptor_leaves_no_dead_mount(
    make_daemon: Callable[..., Daemon],
    in_place: Callable[..., InPlace],
    files: Path,
) -> None:
    daemon = make_daemon("state", **FAST)
    (files / "a.txt").write_text("a\n")
    (files / "b.bin").write_bytes(os.urandom(5000))
    before = listing(files)
    m = in_place(daemon, files)
    m.proc.send_signal(signal.SIGKILL)
    m.proc.wait(10)
    assert dead(str(m.dir))  # what the daemon must not leave behind
    mounts, events = supervise(daemon)

    def healthy() -> bool:
        asyncio.run(mounts.check())
        return not dead(str(m.dir))

    wait_until(healthy, 30, "the supervisor to replace the dead mount")
    assert [e[1] for e in events] == ["mount-lost", "mount-restarted"], events
    # Restarted: a live interceptor serves the directory again, as it was.
    [row] = mounts.list()
    assert row["alive"] and row["mounted"] and row["pid"] != m.proc.pid
    assert listing(files) == before
    # Unmounted by the supervisor: the directory is back as it was.
    asyncio.run(mounts.remove(str(files)))
    assert not is_inplace_mount(m.dir)
    assert listing(files) == before
    assert mounts.list() == []


def test_unmount_gives_the_directory_back(
    make_daemon: Callable[..., Daemon], in_place: Callable[..., InPlace], files: Path
) -> None:
    daemon = make_daemon("state", **FAST)
    f = files / "kept.txt"
    f.write_text("before\n")
    os.symlink("kept.txt", files / "link")
    (files / "sub").mkdir()
    protect(daemon, f, "on-write", "manual")
    before = listing(files)
    m = in_place(daemon, files)
    assert listing(files) == before  # served as it is
    with f.open("a") as fh:
        fh.write("during\n")
    during = listing(files)
    assert m.unmount() == 0
    assert not is_inplace_mount(m.dir)
    assert listing(files) == during  # exactly what the mount showed, nothing left over
    assert f.read_text() == "before\nduring\n"
    assert not list((daemon.state_dir / "mounts").glob("*.json"))


def test_allow_other_only_where_permitted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "fuse.conf"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert not allow_other_permitted(str(conf))  # no fuse.conf
    conf.write_text("# user_allow_other\nmount_max = 1000\n")
    assert not allow_other_permitted(str(conf))
    conf.write_text("mount_max = 1000\nuser_allow_other  # for filetwin\n")
    assert allow_other_permitted(str(conf))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert allow_other_permitted(str(tmp_path / "missing.conf"))
