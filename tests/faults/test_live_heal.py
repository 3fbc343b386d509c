"""A heal meets a program that keeps the file open (issue: healing you can trust).

No write acknowledged to the program is lost or rolled back: a file that reads
without error is not healed, and a damaged one is healed into its inode so the
program's next writes land in the live file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tests.faults.conftest import FAST, digest, flip_silently, kinds, protect, quarantined
from tests.helpers import Daemon, wait_until


def test_recover_while_a_program_appends_loses_no_line(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    daemon = make_daemon("state", **FAST)
    f = files / "app.log"
    f.write_bytes(b"line 0\n")
    protect(daemon, f, "on-close", "notify")
    with open(f, "ab", buffering=0) as app:
        for i in range(1, 4):
            app.write(f"line {i}\n".encode())
        answer = daemon.client.request_recovery(f, reason="a person ran recover")
        assert answer["healed"] is False and "newer" in answer["message"], answer
        for i in range(4, 7):
            app.write(f"line {i}\n".encode())
    want = b"".join(f"line {i}\n".encode() for i in range(7))
    assert f.read_bytes() == want
    assert quarantined(daemon) == []
    assert "heal-skipped" in kinds(daemon, f)
    wait_until(lambda: digest(want) in {v["hash"] for v in daemon.client.history(f)},
               what="the version of every line")  # fmt: skip


def test_recover_of_a_clean_file_heals_nothing(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    daemon = make_daemon("state", **FAST)
    f = files / "clean.txt"
    f.write_bytes(b"all good\n")
    protect(daemon, f, "on-close", "notify")
    r = daemon.cli("recover", str(f))
    assert r.returncode == 0, r.stderr
    assert "nothing to heal" in r.stdout
    assert quarantined(daemon) == [] and "healed" not in kinds(daemon, f)


def test_a_damaged_file_held_open_is_healed_into_its_inode(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    daemon = make_daemon("state", **FAST)
    f = files / "db.bin"
    good = os.urandom(64 * 1024)
    f.write_bytes(good)
    protect(daemon, f, "on-close", "notify")
    inode = f.stat().st_ino
    with open(f, "r+b", buffering=0) as app:
        flip_silently(f)  # silent corruption: same size and mtime, other bytes
        answer = daemon.client.request_recovery(f, reason="the application saw a bad page")
        assert answer["healed"] is True, answer
        assert f.stat().st_ino == inode, "healed by a rename: the program writes into nothing"
        assert f.read_bytes() == good
        app.seek(0)
        app.write(b"AFTER")  # lands in the healed file
    assert f.read_bytes() == b"AFTER" + good[5:]
