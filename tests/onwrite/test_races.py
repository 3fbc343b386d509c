"""Capture without the library against the journal's other writers, and against
a symlink planted at the entry's name (as root)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import filetwin
from tests.faults.strace import trace
from tests.helpers import Daemon, wait_until

BLOCK = 4096


def strace(pid: int, *expr: str) -> contextlib.AbstractContextManager[Path]:
    """Run ``strace -f -p PID -e EXPR...`` on a running daemon (all its threads)."""
    return trace([pid], *expr)


def restored(daemon: Daemon, f: Path, **how: str) -> bytes:
    out = f.with_suffix(".restored")
    daemon.client.restore(f, to=out, **how)  # type: ignore[arg-type]
    return out.read_bytes()


# item 2: a capture's records never interleave with a stream's --------------------
def test_a_slow_capture_never_overwrites_an_acknowledged_stream_write(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    daemon = make_daemon("race", capture_quiet_ms=20)
    f = files / "race.db"
    f.write_bytes(b"A" * BLOCK * 64)
    daemon.client.add(f, backup="on-write", sync="always")
    wait_until(lambda: daemon.client.status(f)["last_version"], what="the first version")
    # Every fdatasync of the daemon takes 150 ms: a capture that appends its
    # records one by one, a sync each, is slow enough to be overtaken.
    with strace(daemon.pid, "trace=fdatasync", "inject=fdatasync:delay_enter=150000"):
        base = daemon.client.journal(f)["last_seq"] or 0
        with f.open("r+b") as fh:  # a program without the library changes 16 blocks
            for i in range(0, 64, 4):
                fh.seek(i * BLOCK)
                fh.write(b"O" * BLOCK)
        wait_until(
            lambda: (daemon.client.journal(f)["last_seq"] or 0) > base,
            what="the capture to start appending",
        )
        # Meanwhile an application writes the last changed block through the library.
        with filetwin.open(f, "r+b", client=daemon.client) as fh:
            fh.seek(60 * BLOCK)
            fh.write(b"N" * BLOCK)
        acked = daemon.client.journal(f)
    live = f.read_bytes()
    assert live[60 * BLOCK : 61 * BLOCK] == b"N" * BLOCK
    # Once every record is in (no strace now), the newest state is the live file.
    wait_until(lambda: restored(daemon, f) == live, what="the newest state to be the live file")
    assert restored(daemon, f, at=f"seq:{acked['last_seq']}") == live
    r = daemon.cli("verify", str(f))
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert not [e for e in daemon.client.events(f) if e["kind"] in ("corrupt", "healed")]


# item 9: a symlink at the entry's name is never read through -------------------
@pytest.mark.skipif(os.geteuid() != 0, reason="the attack is on a daemon running as root")
def test_capture_never_reads_through_a_symlink_planted_at_the_name(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    daemon = make_daemon("root", capture_quiet_ms=20)
    secret = files / "shadow-secret"
    secret.write_bytes(b"TOPSECRET-" * 500)
    secret.chmod(0o600)
    home = files / "home-u"
    home.mkdir(mode=0o777)
    f = home / "notes.db"
    f.write_bytes(b"user notes " * 100)
    daemon.client.add(f, backup="on-write")
    wait_until(lambda: daemon.client.status(f)["last_version"], what="the first version")
    with filetwin.open(f, "r+b", client=daemon.client) as fh:
        fh.write(b"USER")
    before = daemon.client.journal(f)["last_seq"]
    # The user swaps the file for a symlink to a root-only file, then "writes" to it.
    link = home / ".notes.tmp"
    link.symlink_to(secret)
    link.rename(f)
    with secret.open("ab") as fh:
        fh.write(b"MORE-TOPSECRET")

    def reported() -> bool:
        return any(e["kind"] == "unsafe-path" for e in daemon.client.events(f))

    wait_until(reported, what="an unsafe-path event")
    assert daemon.client.journal(f)["last_seq"] == before
    jdir = daemon.state_dir / "journals"
    for seg in jdir.rglob("*"):
        if seg.is_file():
            assert b"TOPSECRET" not in seg.read_bytes(), seg
    out = files / "out.db"
    for how in ({}, {"at": "seq:" + str(before)}):
        daemon.client.restore(f, to=out, **how)  # type: ignore[arg-type]
        assert b"TOPSECRET" not in out.read_bytes()
        assert out.read_bytes().startswith(b"USER")
    for v in daemon.client.history(f):
        daemon.client.restore(f, version=v["id"], to=out)
        assert b"TOPSECRET" not in out.read_bytes(), v
