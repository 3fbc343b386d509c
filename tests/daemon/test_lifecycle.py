"""Daemon life cycle: clean stop, kill -9, restart, interrupted jobs, and two
daemons side by side in one directory."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3

from filetwin.errors import NotFound
from tests.helpers import Daemon, wait_until


def hashes(daemon: Daemon, f: Path) -> list[str]:
    return [v["hash"] for v in daemon.client.history(f)]


def has_version(daemon: Daemon, f: Path, data: bytes) -> Callable[[], bool]:
    want = blake3.blake3(data).hexdigest()
    return lambda: bool(hashes(daemon, f)) and hashes(daemon, f)[-1] == want


def snapshot(daemon: Daemon, f: Path) -> tuple[Any, ...]:
    s = daemon.client.status(f)
    return (
        (s["path"], s["backup_mode"], s["retries"], s["timeout_s"], s["keep"], s["versions"]),
        [v["id"] for v in daemon.client.history(f)],
        [(e["kind"], e["message"]) for e in daemon.client.events(f)],
    )


def test_sigterm_stops_cleanly_and_restart_resumes(daemon: Daemon, files: Path) -> None:
    f = files / "kept.txt"
    f.write_text("v1\n")
    assert daemon.cli("add", str(f), "--retries", "5", "--keep", "7").returncode == 0
    f.write_text("v2\n")
    wait_until(has_version(daemon, f, b"v2\n"), what="v2")
    before = snapshot(daemon, f)

    assert daemon.stop(signal.SIGTERM) == 0
    assert not daemon.socket_path.exists()
    assert daemon.cli("status").returncode == 3  # no daemon answers
    f.write_text("changed while down\n")

    daemon.start()
    # The change made while no daemon watched is taken at start.
    wait_until(has_version(daemon, f, b"changed while down\n"), what="the catch-up version")
    entries, versions, events = snapshot(daemon, f)
    assert entries[:5] == before[0][:5]
    assert versions[: len(before[1])] == before[1]
    assert events[: len(before[2])] == before[2]
    assert daemon.client.status(f)["state"] == "watching"
    # ... and the file is watched again.
    f.write_text("after restart\n")
    wait_until(has_version(daemon, f, b"after restart\n"), what="a version after restart")


def test_restart_without_changes_takes_no_version(daemon: Daemon, files: Path) -> None:
    f = files / "quiet.txt"
    f.write_text("same\n")
    daemon.client.add(f)
    n = len(daemon.client.history(f))
    daemon.restart()
    # A marker file in the same directory: once its version exists, the
    # start-up catch-up of quiet.txt has long had its chance.
    marker = files / "marker.txt"
    marker.write_text("m\n")
    daemon.client.add(marker)
    assert len(daemon.client.history(f)) == n
    assert "interrupted" not in [e["kind"] for e in daemon.client.events(f)]


def test_kill_9_keeps_everything(daemon: Daemon, files: Path) -> None:
    f = files / "crash.txt"
    f.write_text("one\n")
    daemon.client.add(f)
    f.write_text("two\n")
    wait_until(has_version(daemon, f, b"two\n"), what="two")
    before = snapshot(daemon, f)
    daemon.stop(signal.SIGKILL)
    assert daemon.socket_path.exists()  # left behind by the killed daemon
    f.write_text("three\n")
    daemon.start()  # a stale socket does not stop a new daemon
    wait_until(has_version(daemon, f, b"three\n"), what="the catch-up version")
    _, versions, events = snapshot(daemon, f)
    assert versions[: len(before[1])] == before[1]
    assert events[: len(before[2])] == before[2]
    f.write_text("four\n")
    wait_until(has_version(daemon, f, b"four\n"), what="a version after restart")
    r = daemon.cli("restore", str(f), "--version", before[1][-1], "--to", str(files / "out"))
    assert r.returncode == 0, r.stderr
    assert (files / "out").read_text() == "two\n"


def test_kill_9_during_job_reruns_it(make_daemon: Callable[..., Daemon], files: Path) -> None:
    daemon = make_daemon(worker_stall_s=60)
    f = files / "stalled.txt"
    f.write_text("first\n")
    add = subprocess.Popen(
        [sys.executable, "-m", "filetwin", "--state-dir", str(daemon.state_dir)]
        + ["add", str(f), "--timeout", "120"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def running() -> bool:
        try:
            return daemon.client.status(f)["worker_pid"] is not None
        except NotFound:
            return False

    wait_until(running, what="the stalled first job")
    daemon.stop(signal.SIGKILL)
    assert add.wait(30) != 0  # the daemon died under it
    daemon.restart(retry_backoff_s=0.05)  # no stall any more
    wait_until(lambda: hashes(daemon, f), what="the interrupted job to run again")
    assert hashes(daemon, f) == [blake3.blake3(b"first\n").hexdigest()]
    kinds = [e["kind"] for e in daemon.client.events(f)]
    assert "interrupted" in kinds and kinds.index("interrupted") < kinds.index("backup")
    s = wait_until(
        lambda: (st := daemon.client.status(f))["last_result"] == "ok" and st,
        what="status to show the job done",
    )
    assert s["job_kind"] is None and s["worker_pid"] is None and s["versions"] == 1


def test_two_daemons_share_a_directory(make_daemon: Callable[..., Daemon], files: Path) -> None:
    one, two = make_daemon("one"), make_daemon("two")
    a, b = files / "a.txt", files / "b.txt"
    a.write_text("a0\n")
    b.write_text("b0\n")
    one.client.add(a)
    two.client.add(b)
    for n in range(1, 4):
        a.write_text(f"a{n}\n")
        b.write_text(f"b{n}\n")
        wait_until(has_version(one, a, f"a{n}\n".encode()), what=f"a{n}")
        wait_until(has_version(two, b, f"b{n}\n".encode()), what=f"b{n}")
    assert [e["path"] for e in one.client.status()] == [str(a)]
    assert [e["path"] for e in two.client.status()] == [str(b)]
    assert one.cli("history", str(b)).returncode != 0
    assert two.cli("history", str(a)).returncode != 0
    assert {e["path"] for e in one.client.events()} == {str(a)}
    assert {e["path"] for e in two.client.events()} == {str(b)}

    assert one.stop(signal.SIGTERM) == 0
    assert two.socket_path.exists()
    b.write_text("b4\n")
    wait_until(has_version(two, b, b"b4\n"), what="b4 with the other daemon stopped")
    assert len(two.client.history(b)) == 5


def test_start_with_a_directory_gone(daemon: Daemon, files: Path) -> None:
    d = files / "sub"
    d.mkdir()
    f, g = d / "x.txt", files / "y.txt"
    f.write_text("one\n")
    g.write_text("other\n")
    daemon.client.add(f, g)
    assert daemon.stop() == 0
    shutil.rmtree(d)
    daemon.start()  # one entry's directory missing does not stop the daemon
    wait_until(lambda: daemon.client.status(f)["state"] == "missing", what="state missing")
    assert daemon.client.status(g)["state"] == "watching"
    d.mkdir()
    f.write_text("two\n")
    wait_until(has_version(daemon, f, b"two\n"), what="a version once the directory is back")
    assert daemon.client.status(f)["state"] == "watching"


def test_a_state_directory_too_deep_for_a_socket_address_works(
    tmp_path: Path, files: Path
) -> None:
    """A socket's address holds 107 bytes of path: under a deeper state directory
    the daemon could not bind its sockets and did not start (CI met it once the
    test processes' temporary directories grew a component)."""
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "state"
    deep.parent.mkdir(parents=True)
    assert len(str(deep / "filetwin.sock")) > 107
    d = Daemon(deep).start()
    try:
        f = files / "notes.txt"
        f.write_text("deep\n")
        d.client.add(f, backup="on-write")
        r = d.cli("status", str(f), "--json")
        assert r.returncode == 0, r.stderr
        stream = d.client.open_stream(f)  # the journal socket, beside the API's
        try:
            seq = stream.send("write", 0, b"DEEP")
        finally:
            stream.close()
        assert d.client.journal(f)["last_seq"] == seq
    finally:
        d.stop()
