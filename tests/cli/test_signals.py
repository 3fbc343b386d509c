"""Signals and timeouts (issue 12, point 5): SIGHUP stops the daemon cleanly,
a stopped daemon makes the CLI give up within --timeout (exit 3, saying what
it waited for), Ctrl-C during add says what the daemon still does, and a
reader that goes away ends the CLI quietly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers import Daemon, run_cli, wait_until


def test_sighup_reloads_and_sigterm_stops_cleanly(daemon: Daemon) -> None:
    """SIGHUP (systemctl reload) re-reads the config and the daemon goes on serving
    (tests/daemon/test_reconcile.py has what a reload does); SIGTERM stops it cleanly."""
    sockets = [daemon.state_dir / "filetwin.sock", daemon.state_dir / "journal.sock"]
    assert all(s.exists() for s in sockets)
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "SIGHUP: reloaded" in daemon.log(), what="the reload to be logged")
    assert daemon.proc.poll() is None and daemon.cli("status").returncode == 0
    assert daemon.stop(signal.SIGTERM) == 0
    assert not [s for s in sockets if s.exists()]
    assert daemon.cli("status").returncode == 3


def test_stopped_daemon_makes_status_fail_within_the_timeout(daemon: Daemon) -> None:
    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        for args in (("--timeout", "1", "status"), ("status", "--timeout", "1")):
            started = time.monotonic()
            r = daemon.cli(*args)
            took = time.monotonic() - started
            assert r.returncode == 3, (r.stdout, r.stderr)
            assert "did not answer GET /status within 1 s" in r.stderr
            assert "--timeout" in r.stderr
            assert took < 10, took
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    assert daemon.cli("status").returncode == 0


def test_interrupted_add_says_what_the_daemon_still_does(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    daemon = make_daemon(worker_stall_s=2.0)
    paths = [files / f"slow-{i}.txt" for i in range(2)]
    for p in paths:
        p.write_text(p.name)
    cli = subprocess.Popen(
        [sys.executable, "-m", "filetwin", "--state-dir", str(daemon.state_dir), "add",
         *map(str, paths)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # The request has reached the daemon once its entries are in the table.
    wait_until(lambda: len(daemon.client.status()) == 2, what="the add to reach the daemon")
    cli.send_signal(signal.SIGINT)
    _out, err = cli.communicate(timeout=30)
    assert cli.returncode == 130, err
    assert "interrupted; the daemon still adds the 2 files" in err
    assert "Aborted" not in err and "Traceback" not in err
    for p in paths:
        wait_until(lambda p=p: daemon.client.status(p)["versions"] >= 1, 30, "first version")
        assert daemon.client.status(p)["state"] == "watching"


def test_reader_gone_ends_events_quietly(daemon: Daemon, files: Path) -> None:
    for i in range(3):
        f = files / f"e{i}.txt"
        f.write_text("x")
        assert daemon.cli("add", str(f)).returncode == 0
    cli = subprocess.Popen(
        [sys.executable, "-m", "filetwin", "--state-dir", str(daemon.state_dir), "events",
         "--follow"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert cli.stdout is not None and cli.stderr is not None
    assert cli.stdout.readline()  # `| head -1`
    cli.stdout.close()
    late = files / "late.txt"
    late.write_text("y")
    assert daemon.cli("add", str(late)).returncode == 0  # an event to write
    assert cli.wait(30) == -signal.SIGPIPE
    assert cli.stderr.read() == b""
    # Without --follow, through a real pipe: nothing on stderr either.
    r = subprocess.run(
        f"{sys.executable} -m filetwin --state-dir {daemon.state_dir} events | head -1",
        shell=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0 and r.stdout.count("\n") == 1 and r.stderr == ""
    assert run_cli("--state-dir", str(daemon.state_dir), "status").returncode == 0
