"""Silent corruption (bytes flipped, size and mtime kept) on the plain test
filesystem, and healing on request: ``notify`` from Python, curl and the CLI,
refused for ``manual`` entries; the ``on_event`` hook."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import filetwin
from tests.faults.conftest import (
    FAST,
    digest,
    event,
    flip_silently,
    follows,
    history_hashes,
    kinds,
    protect,
    quarantined,
)
from tests.helpers import Daemon, wait_until


def protected(daemon: Daemon, files: Path, name: str, backup: str, recovery: str) -> bytes:
    content = os.urandom(100_000)
    (files / name).write_bytes(content)
    protect(daemon, files / name, backup, recovery)
    return content


def refused_to_store(daemon: Daemon, f: Path) -> bool:
    """The capture of the flip's close reported it as corruption (and did not store it)."""
    return any(
        e["kind"] == "corrupt" and "not stored" in e["message"] for e in daemon.client.events(f)
    )


@pytest.mark.parametrize("backup", ["on-close", "on-write"])
def test_auto_entry_is_healed_when_the_daemon_sees_silent_corruption(
    make_daemon: Callable[..., Daemon], files: Path, backup: str
) -> None:
    daemon = make_daemon("state", **FAST)
    f = files / "quiet.bin"
    content = protected(daemon, files, f.name, backup, "auto")
    bad = flip_silently(f)
    wait_until(lambda: follows(kinds(daemon, f), "corrupt", "healed"), what="corrupt, healed")
    assert f.read_bytes() == content
    [(copy, note)] = quarantined(daemon)
    assert copy.read_bytes() == bad
    assert note["unreadable"] == []
    assert str(copy) in event(daemon, f, "healed")["message"]  # type: ignore[index]
    wait_until(lambda: daemon.client.status(f)["job_kind"] is None, what="the jobs to end")
    assert digest(bad) not in history_hashes(daemon, f)
    if backup == "on-write":
        rebuilt = files / "rebuilt.bin"
        r = daemon.cli("restore", str(f), "--to", str(rebuilt))
        assert r.returncode == 0, r.stderr
        assert rebuilt.read_bytes() == content  # the flip was not journaled either


def test_verify_reports_a_manual_entry_and_leaves_it(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    daemon = make_daemon("state", **FAST)
    f = files / "manual.bin"
    protected(daemon, files, f.name, "on-close", "manual")
    bad = flip_silently(f)
    r = daemon.cli("verify", str(f), "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    [report] = json.loads(r.stdout)
    assert report["status"] == "corrupt"
    assert report["healed"] is False
    assert "mtime" in report["detail"]
    assert f.read_bytes() == bad
    assert quarantined(daemon) == []
    assert "healed" not in kinds(daemon, f)
    wait_until(lambda: refused_to_store(daemon, f), what="the backup to refuse the flip")
    assert digest(bad) not in history_hashes(daemon, f)


def test_recover_heals_a_notify_entry_from_the_cli(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    daemon = make_daemon("state", **FAST)
    f = files / "notify.bin"
    content = protected(daemon, files, f.name, "on-close", "notify")
    bad = flip_silently(f)
    r = daemon.cli("verify", str(f))
    assert r.returncode == 1, r.stdout + r.stderr
    assert f.read_bytes() == bad  # verify only reports a notify entry
    r = daemon.cli("recover", str(f))
    assert r.returncode == 0, r.stderr
    assert f.read_bytes() == content
    [(copy, _note)] = quarantined(daemon)
    assert str(copy) in r.stdout
    assert copy.read_bytes() == bad
    assert daemon.client.status(f)["recovery_requested"] in (0, False)
    wait_until(lambda: refused_to_store(daemon, f), what="the backup to refuse the flip")
    assert digest(bad) not in history_hashes(daemon, f)


def test_notify_from_python_and_from_curl(make_daemon: Callable[..., Daemon], files: Path) -> None:
    daemon = make_daemon("state", **FAST)
    f = files / "notify.bin"
    content = protected(daemon, files, f.name, "on-write", "notify")
    bad = flip_silently(f)
    result = daemon.client.request_recovery(f)
    assert f.read_bytes() == content
    assert result["path"] == str(f)
    assert Path(result["quarantined"]).read_bytes() == bad

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (the Python half passed)")
    flip_silently(f, offset=50_000)
    r = subprocess.run(
        ["curl", "--silent", "--show-error", "--fail-with-body"]
        + ["--unix-socket", str(daemon.socket_path)]
        + ["-d", json.dumps({"path": str(f)}), "http://filetwin/recover"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    answer = json.loads(r.stdout)
    assert answer["quarantined"] and answer["quarantined"] != result["quarantined"]
    assert f.read_bytes() == content
    assert len(quarantined(daemon)) == 2
    assert kinds(daemon, f).count("healed") == 2


def test_recovery_of_a_manual_entry_is_refused(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    daemon = make_daemon("state", **FAST)
    f = files / "manual.bin"
    protected(daemon, files, f.name, "on-close", "manual")
    bad = flip_silently(f)
    r = daemon.cli("recover", str(f))
    assert r.returncode == 1
    assert "filetwin restore" in r.stderr
    with pytest.raises(filetwin.Conflict, match="filetwin restore"):
        daemon.client.request_recovery(f)
    assert f.read_bytes() == bad
    assert f.stat().st_mtime_ns == daemon.client.history(f)[-1]["mtime_ns"]
    assert quarantined(daemon) == []
    seen = kinds(daemon, f)
    assert seen.count("heal-refused") == 2
    assert "healed" not in seen
    assert daemon.client.status(f)["recovery_requested"] in (0, False)


def test_on_event_hook_gets_every_event_as_json(
    make_daemon: Callable[..., Daemon], files: Path, tmp_path: Path
) -> None:
    hook = tmp_path / "hook.jsonl"
    daemon = make_daemon("state", on_event=f"cat >> {hook}", **FAST)
    f = files / "hooked.bin"
    protected(daemon, files, f.name, "on-close", "notify")
    flip_silently(f)
    daemon.client.request_recovery(f)

    def hooked() -> list[str]:
        if not hook.exists():
            return []
        lines = [json.loads(line) for line in hook.read_text().splitlines()]
        got = [e["kind"] for e in lines if e["path"] == str(f)]
        return got if {"added", "backup", "healed"} <= set(got) else []

    seen = wait_until(hooked, what="the hook to record the events")
    assert seen == kinds(daemon, f)[: len(seen)]  # each event once, in order
    healed = json.loads(next(line for line in hook.read_text().splitlines() if '"healed"' in line))
    assert {"time", "path", "kind", "ok", "message"} <= set(healed)
    assert healed["ok"] is True


def test_status_shows_the_recovery_job_while_it_runs(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    daemon = make_daemon("state", worker_stall_s=0.5, **FAST)
    f = files / "slow.bin"
    content = protected(daemon, files, f.name, "on-close", "notify")
    flip_silently(f)
    wait_until(lambda: refused_to_store(daemon, f), what="the flip to be reported")
    wait_until(lambda: daemon.client.status(f)["job_kind"] is None, what="the backup to end")
    done: list[dict[str, object]] = []
    asker = threading.Thread(target=lambda: done.append(daemon.client.request_recovery(f)))
    asker.start()
    try:
        row = wait_until(
            lambda: (
                (r := daemon.client.status(f))["job_kind"] == "recovery" and r["worker_pid"] and r
            ),
            what="status to show the recovery job",
        )
        assert row["recovery_requested"] in (1, True)
        assert row["job_started_at"]
    finally:
        asker.join(60)
    assert done and f.read_bytes() == content
    assert daemon.client.status(f)["recovery_requested"] in (0, False)
