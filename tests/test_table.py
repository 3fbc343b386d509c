"""The management table: entries, events, WAL mode, durability across reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from filetwin.errors import Conflict, NotFound
from filetwin.policy import Policy
from filetwin.table import Table, as_json


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        self.t += 1
        return self.t


@pytest.fixture
def table(tmp_path: Path) -> Table:
    return Table(tmp_path / "table.sqlite", Clock())


def test_wal_mode(table: Table) -> None:
    assert table.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert table.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_add_get_set_delete(table: Table) -> None:
    policy = Policy(backup_mode="on-write", recovery_mode="auto", retries=5, timeout_s=2.5, keep=9)
    row = table.add("/f", policy, "/repo")
    assert row["path"] == "/f" and row["state"] == "watching" and row["pending_change"] == "add"
    assert (row["retries"], row["timeout_s"], row["keep"]) == (5, 2.5, 9)
    assert Table.policy_of(row) == policy
    assert row["job_kind"] is None and row["versions"] == 0 and row["created_at"] > 0
    with pytest.raises(Conflict, match="already protected"):
        table.add("/f", Policy(), "/repo")

    table.set("/f", job_kind="backup", worker_pid=1234, job_started_at=5.0)
    row = table.require("/f")
    assert (row["job_kind"], row["worker_pid"], row["job_started_at"]) == ("backup", 1234, 5.0)
    with pytest.raises(ValueError, match="not an entry field"):
        table.set("/f", id=7)
    with pytest.raises(ValueError):
        table.set("/f", **{"state = 'x', retries": 1})

    table.add("/a", Policy(), "/repo")
    assert [r["path"] for r in table.all()] == ["/a", "/f"]
    table.delete("/f")
    assert table.get("/f") is None
    with pytest.raises(NotFound, match="/f is not protected"):
        table.require("/f")
    table.delete("/f")  # deleting twice is harmless
    assert [r["path"] for r in table.all()] == ["/a"]


def test_transaction_rolls_back(table: Table) -> None:
    table.add("/a", Policy(), "/repo")
    with pytest.raises(Conflict), table.transaction():
        table.add("/b", Policy(), "/repo")
        table.add("/a", Policy(), "/repo")
    assert table.get("/b") is None


def test_events_filter_after_and_limit(table: Table) -> None:
    ids = []
    for n in range(6):
        path = "/a" if n % 2 == 0 else "/b"
        ids.append(table.add_event(path, f"k{n}", n != 3, f"message {n}")["id"])
    table.add_event(None, "daemon", True, "no path")
    assert [e["kind"] for e in table.events()] == ["k0", "k1", "k2", "k3", "k4", "k5", "daemon"]
    assert [e["kind"] for e in table.events("/a")] == ["k0", "k2", "k4"]
    assert [e["kind"] for e in table.events(after_id=ids[3])] == ["k4", "k5", "daemon"]
    assert [e["kind"] for e in table.events(limit=2)] == ["k5", "daemon"]  # newest, in order
    assert [e["kind"] for e in table.events("/b", limit=2)] == ["k3", "k5"]
    assert [e["kind"] for e in table.events("/b", after_id=ids[5])] == []
    k3 = table.events("/b")[1]
    assert k3["ok"] == 0 and as_json(k3)["ok"] is False
    assert as_json(k3)["time"].startswith("2023-11-14T")
    times = [e["time"] for e in table.events()]
    assert times == sorted(times)


def test_survives_reopen_and_second_connection(tmp_path: Path) -> None:
    path = tmp_path / "table.sqlite"
    t1 = Table(path)
    t1.add("/f", Policy(), "/repo")
    t1.set("/f", last_result="ok", versions=3)
    t1.add_event("/f", "backup", True, "stored")
    # A second connection (the CLI appending a restore event offline) sees it all.
    t2 = Table(path)
    assert t2.require("/f")["versions"] == 3
    t2.add_event("/f", "restore", True, "restored")
    assert [e["kind"] for e in t1.events("/f")] == ["backup", "restore"]
    t1.close()
    t2.close()
    t3 = Table(path)
    assert t3.require("/f")["last_result"] == "ok"
    t3.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
