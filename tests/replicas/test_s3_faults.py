"""Replicas on a real S3 server (SeaweedFS) under faults: the server stopped in the
middle of journal shipping and of backups, then started again; wrong credentials."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Daemon, run_cli, wait_until
from tests.replicas.conftest import replica_toml
from tests.s3server import S3Server, fresh_location


def _row(d: Daemon, path: Path) -> dict[str, Any]:
    [r] = d.client.status(path)["replicas"]  # type: ignore[typeddict-item]
    return r  # type: ignore[no-any-return]


def _kinds(d: Daemon) -> list[str]:
    return [e["kind"] for e in d.client.events()]


@pytest.mark.usefixtures("s3_env")
def test_server_down_mid_shipping_and_backup_then_back(
    replica_daemon: Callable[..., Daemon],
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    files: Path,
) -> None:
    location = fresh_location(s3_server)
    d = replica_daemon(replica_toml(location, lag_alert_s=1.0))
    db = files / "db.bin"
    db.write_bytes(b"\0" * 65536)
    d.client.add(db, backup="on-write")
    plain = files / "plain.txt"
    plain.write_bytes(b"one\n")
    d.client.add(plain)
    expected = bytearray(65536)  # what the journaled writes make of the file
    seq = d.client.notify_write(db, 0, b"before")
    expected[0:6] = b"before"
    wait_until(lambda: _row(d, db)["journal_seq"] >= seq, 30, "first records shipped")
    s3_server.kill()
    try:
        # Writes and saves go on at local speed while the replica is away.
        slowest = 0.0
        for i in range(200):
            t0 = time.monotonic()
            seq = d.client.notify_write(db, 100 + i * 64, bytes([i % 251]) * 64)
            expected[100 + i * 64 : 164 + i * 64] = bytes([i % 251]) * 64
            slowest = max(slowest, time.monotonic() - t0)
        assert slowest < 1.0, f"a journaled write waited {slowest:.3f} s for the replica"
        plain.write_bytes(b"two: made while the replica was down\n")
        v = d.client.backup(plain)
        assert d.client.history(plain)[-1]["id"] == v["id"]
        wait_until(lambda: "replica-failed" in _kinds(d), 60, "an event naming the failure")
        wait_until(lambda: "replica-behind" in _kinds(d), 30, "the replica reported behind")
        assert _row(d, db)["lag_s"] > 0
    finally:
        s3_server.restart()
    wait_until(
        lambda: _row(d, db)["journal_seq"] >= seq and _row(d, plain)["version"] == v["id"],
        90,
        "the replica to catch up",
    )
    wait_until(lambda: "replica-caught-up" in _kinds(d), 30, "caught-up event")
    check = d.cli("--config", str(d.config_path), "check", "--replica", "r1")
    assert check.returncode == 0, check.stdout + check.stderr
    out = tmp_path / "from-s3"
    r = run_cli("restore", str(plain), "--from", location, "--to", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == b"two: made while the replica was down\n"
    r = run_cli("restore", str(db), "--from", location, "--at", f"seq:{seq}", "--to", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == bytes(expected)


@pytest.mark.usefixtures("s3_env")
def test_wrong_credentials_are_an_event_and_nothing_local_is_lost(
    replica_daemon: Callable[..., Daemon],
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    files: Path,
) -> None:
    location = fresh_location(s3_server)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    d = replica_daemon(replica_toml(location))
    f = files / "f.txt"
    f.write_bytes(b"kept locally\n")
    d.client.add(f)
    events = wait_until(
        lambda: [e for e in d.client.events() if e["kind"] == "replica-failed"], 60, "the event"
    )
    assert "r1" in events[0]["message"] and location in events[0]["message"]
    assert d.client.history(f)[-1]["size"] == len(b"kept locally\n")
    assert _row(d, f)["version"] is None and _row(d, f)["lag_s"] > 0
