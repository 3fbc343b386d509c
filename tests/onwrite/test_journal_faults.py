"""A journal that fails (fdatasync EIO, a full disk) is an event, is reopened,
and never claims a write it could not keep."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from filetwin.errors import FiletwinError
from filetwin.repo.journal import iter_records
from filetwin.repo.moments import journal_dir
from tests.helpers import Daemon, wait_until
from tests.onwrite.test_races import strace


def kinds(daemon: Daemon, f: Path) -> list[str]:
    return [e["kind"] for e in daemon.client.events(f)]


def seqs(daemon: Daemon, f: Path) -> list[int]:
    return [r.seq for r in iter_records(journal_dir(daemon.state_dir / "journals", str(f)))]


def restored(daemon: Daemon, f: Path) -> bytes:
    out = f.with_suffix(".restored")
    daemon.client.restore(f, to=out)
    return out.read_bytes()


def _batch_entry(daemon: Daemon, f: Path) -> int:
    """``f`` holding ``0123456789``, protected on-write with batch syncs; its
    number of versions once the first is stored."""
    f.write_bytes(b"0123456789")
    daemon.client.add(f, backup="on-write", sync="batch")
    wait_until(lambda: daemon.client.status(f)["last_version"], what="the first version")
    return len(daemon.client.history(f))


def test_a_failed_batch_fdatasync_is_an_event_degrades_and_takes_a_fresh_version(
    daemon: Daemon, files: Path
) -> None:
    f = files / "batch.db"
    versions = _batch_entry(daemon, f)
    with strace(daemon.pid, "trace=fdatasync", "inject=fdatasync:error=EIO:when=1+"):
        daemon.client.notify_write(f, 0, b"AB")  # acknowledged: in the kernel
        with f.open("r+b") as fh:
            fh.write(b"AB")
        wait_until(lambda: "degraded" in kinds(daemon, f), what="a degraded event")
    failed = [e for e in daemon.client.events(f) if e["kind"] == "journal-failed"]
    assert failed and str(f) in failed[0]["message"] and "fdatasync" in failed[0]["message"]
    # The entry said why (last_error) until the fresh version below re-established
    # protection, which may already have cleared it: the event keeps the reason.
    degraded = [e for e in daemon.client.events(f) if e["kind"] == "degraded"]
    assert degraded and "fdatasync" in degraded[0]["message"]
    # Protection is re-established: a fresh version holds the acknowledged write.
    wait_until(lambda: len(daemon.client.history(f)) > versions, what="a fresh version")
    assert restored(daemon, f) == b"AB23456789"
    # The writer was reopened: later reports work (no update, no restart).
    daemon.client.notify_write(f, 2, b"CD")
    with f.open("r+b") as fh:
        fh.seek(2)
        fh.write(b"CD")
    assert restored(daemon, f) == b"ABCD456789" == f.read_bytes()


def test_the_fresh_version_after_a_failed_sync_holds_writes_not_yet_in_the_file(
    daemon: Daemon, files: Path
) -> None:
    """filetwin.open journals a write before it writes the file (the journal is
    ahead). A fresh version read from the live file in that window, standing for
    the journal so far, dropped the acknowledged write from the twin (CI saw it
    once under load): the fresh version folds the journal instead."""
    f = files / "ahead.db"
    versions = _batch_entry(daemon, f)
    with strace(daemon.pid, "trace=fdatasync", "inject=fdatasync:error=EIO:when=1+"):
        daemon.client.notify_write(f, 0, b"AB")  # acknowledged; the file is not written yet
        wait_until(lambda: "degraded" in kinds(daemon, f), what="a degraded event")
        wait_until(lambda: len(daemon.client.history(f)) > versions, what="a fresh version")
    assert f.read_bytes() == b"0123456789"  # the program has not written it yet
    assert restored(daemon, f) == b"AB23456789"
    newest = daemon.client.history(f)[-1]
    assert newest["cause"] == "checkpoint", newest


def test_a_failed_always_fdatasync_refuses_the_write_and_keeps_no_record(
    daemon: Daemon, files: Path
) -> None:
    f = files / "always.db"
    f.write_bytes(b"0123456789")
    daemon.client.add(f, backup="on-write", sync="always")
    wait_until(lambda: daemon.client.status(f)["last_version"], what="the first version")
    before = seqs(daemon, f)
    with (
        strace(daemon.pid, "trace=fdatasync", "inject=fdatasync:error=EIO:when=1+"),
        pytest.raises(FiletwinError, match="fdatasync"),
    ):
        daemon.client.notify_write(f, 0, b"XX")
    assert seqs(daemon, f) == before, "a write the application was told failed is journaled"
    assert "journal-failed" in kinds(daemon, f)
    assert restored(daemon, f) == b"0123456789"
    seq = daemon.client.notify_write(f, 0, b"YY")  # reopened, no update or restart
    assert seq == (before[-1] if before else 0) + 1
    with f.open("r+b") as fh:
        fh.write(b"YY")
    assert restored(daemon, f) == b"YY23456789"


def _stream(daemon: Daemon, f: Path, retries: int) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(daemon.state_dir / "journal.sock"))
    sock.sendall(json.dumps({"path": str(f), "retries": retries}).encode() + b"\n")
    hello = json.loads(sock.makefile("rb").readline())
    assert hello["ok"], hello
    return sock


def test_the_stream_retries_a_failed_append_when_asked(daemon: Daemon, files: Path) -> None:
    f = files / "retry.db"
    f.write_bytes(b"0123456789")
    daemon.client.add(f, backup="on-write", sync="always")
    wait_until(lambda: daemon.client.status(f)["last_version"], what="the first version")
    sock = _stream(daemon, f, retries=2)
    with strace(daemon.pid, "trace=fdatasync", "inject=fdatasync:error=EIO:when=1"):
        sock.sendall(struct.pack("<BQI", 1, 0, 2) + b"RR")
        status, seq = struct.unpack("<BQ", sock.recv(9, socket.MSG_WAITALL))
    sock.close()
    assert status == 0, "the retry on a reopened journal succeeded"
    assert seqs(daemon, f)[-1] == seq
    assert "journal-failed" in kinds(daemon, f)  # the failure is an event all the same


@pytest.fixture
def small_journals(make_daemon: Callable[..., Daemon], tmp_path: Path) -> Iterator[Daemon]:
    """A daemon whose journals live on a 1 MiB tmpfs (its own, mounted for the test)."""
    state = tmp_path / "full"
    journals = state / "journals"
    journals.mkdir(parents=True)
    state.chmod(0o700)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(journals)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr}")
    try:
        yield make_daemon("full")
    finally:
        subprocess.run(["umount", "-l", str(journals)], check=False)


def test_a_full_disk_is_an_event_and_journaling_resumes_once_space_is_freed(
    small_journals: Daemon, files: Path
) -> None:
    daemon = small_journals
    f = files / "full.db"
    f.write_bytes(b"0" * 100)
    daemon.client.add(f, backup="on-write", sync="always")
    wait_until(lambda: daemon.client.status(f)["last_version"], what="the first version")
    filler = daemon.state_dir / "journals" / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError):
            while True:
                os.write(fd, b"\0" * 65536)
    finally:
        os.close(fd)
    with pytest.raises(FiletwinError):
        daemon.client.notify_write(f, 0, b"X" * 200_000)
    failed = [e for e in daemon.client.events(f) if e["kind"] == "journal-failed"]
    assert failed and "No space left" in failed[-1]["message"], failed
    filler.unlink()
    seq = daemon.client.notify_write(f, 0, b"Y" * 50)  # the writer was reopened
    with f.open("r+b") as fh:
        fh.write(b"Y" * 50)
    assert seqs(daemon, f)[-1] == seq
    assert restored(daemon, f) == b"Y" * 50 + b"0" * 50
