"""Retention through the daemon, the pending change shown while it applies, events --follow."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import blake3

from filetwin.backends import LocalBackend
from filetwin.repo import Repository
from tests.helpers import Daemon, stored_chunks, wait_until


def test_retention_keeps_newest_and_drops_unreferenced_chunks(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    daemon = make_daemon("retention", gc_delay_s=0.2)
    f = files / "kept.bin"
    contents = [bytes([i]) * 300_000 for i in range(5)]
    f.write_bytes(contents[0])
    assert daemon.cli("add", str(f), "--keep", "2").returncode == 0
    for i, data in enumerate(contents[1:], start=1):
        f.write_bytes(data)
        want = blake3.blake3(data).hexdigest()
        wait_until(
            lambda want=want: daemon.client.status(f)["last_good_hash"] == want,
            what=f"version {i}",
        )
    wait_until(lambda: len(daemon.client.history(f)) == 2, what="retention to 2 versions")
    history = daemon.client.history(f)
    assert daemon.client.status(f)["versions"] == 2
    restored = files / "out.bin"
    for v in history:
        r = daemon.cli("restore", str(f), "--version", v["id"], "--to", str(restored))
        assert r.returncode == 0, r.stderr
        assert restored.read_bytes() in contents[-2:]
    repo = Repository(LocalBackend(daemon.state_dir / "repository"))
    referenced = {c for m in repo.versions(str(f)) for c in m.chunks}

    def stored() -> set[str]:
        return stored_chunks(repo)

    wait_until(lambda: stored() == referenced, what="unreferenced chunks to be removed")
    check = daemon.cli("check", "--read-data")
    assert check.returncode == 0, check.stderr


def test_pending_change_is_shown_while_it_applies(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    d = make_daemon("slow", worker_stall_s=1.5)
    f = files / "slow.txt"
    f.write_text("slow\n")
    done: list[int] = []
    t = threading.Thread(target=lambda: done.append(d.cli("add", str(f)).returncode))
    t.start()

    def pending() -> bool:
        rows = d.client.status()
        return bool(rows) and rows[0]["pending_change"] == "add" and rows[0]["job_kind"] == "backup"

    wait_until(pending, what="status to show the pending add")
    t.join(60)
    assert done == [0]
    assert d.client.status(f)["pending_change"] == "none"


def test_events_follow_streams_new_events(daemon: Daemon, files: Path) -> None:
    f = files / "followed.txt"
    f.write_text("a\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "filetwin",
            "events",
            "--follow",
            "--json",
            "--state-dir",
            str(daemon.state_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        daemon.client.add(f)
        seen = []
        for line in proc.stdout:
            event = json.loads(line)
            seen.append(event)
            if event["kind"] == "backup" and event["path"] == str(f):
                break
        assert {"time", "path", "kind", "ok", "message"} <= set(seen[-1])
        assert any(e["kind"] == "added" for e in seen)
    finally:
        proc.terminate()
        proc.wait(10)
