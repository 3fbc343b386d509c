"""A daemon with a replica on another directory: versions and journal records reach it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from filetwin.replicas.layout import host_location
from filetwin.repo.opening import open_repository
from tests.helpers import Daemon, wait_until
from tests.replicas.conftest import HOST, replica_toml


def _replica_row(d: Daemon, path: Path) -> dict:
    rows = d.client.status(path)["replicas"]  # type: ignore[typeddict-item]
    assert [r["name"] for r in rows] == ["r1"]
    return rows[0]


def test_versions_and_records_reach_a_directory_replica(
    replica_daemon: Callable[..., Daemon], tmp_path: Path, files: Path
) -> None:
    replica = tmp_path / "replica"
    d = replica_daemon(replica_toml(str(replica)))
    f = files / "notes.txt"
    f.write_bytes(b"first\n")
    d.client.add(f)
    f.write_bytes(b"second version\n")
    v = d.client.backup(f)
    row = wait_until(
        lambda: (r := _replica_row(d, f))["version"] == v["id"] and r,
        what="the version on the replica",
    )
    assert row["lag_s"] == 0
    # The replica opens as a repository of its own, and holds the version bit for bit.
    copy = open_repository(host_location(str(replica), HOST))
    [m] = [m for m in copy.versions(str(f)) if m.id == v["id"]]
    assert b"".join(copy.read_version(m)) == b"second version\n"

    db = files / "data.bin"
    db.write_bytes(b"\0" * 8192)
    d.client.add(db, backup="on-write")
    seq = 0
    for i in range(50):
        seq = d.client.notify_write(db, i * 100, bytes([65 + i % 26]) * 100)
    r = wait_until(
        lambda: (r := _replica_row(d, db))["journal_seq"] >= seq and r, what="records shipped"
    )
    assert r["journal_seq"] == seq
    objects = sorted(p.name for p in (replica / "hosts" / HOST / "journals").rglob("*-*"))
    assert objects, "journal objects are named first-last"
    first, last = (int(x) for x in objects[-1].split("-"))
    assert first <= last == seq
    digest = hashlib.sha256(b"".join(copy.read_version(m))).hexdigest()
    assert digest == hashlib.sha256(b"second version\n").hexdigest()


def test_status_listing_and_cli_json_show_replicas(
    replica_daemon: Callable[..., Daemon], tmp_path: Path, files: Path
) -> None:
    import json

    d = replica_daemon(replica_toml(str(tmp_path / "replica")))
    f = files / "a.txt"
    f.write_bytes(b"a")
    d.client.add(f)
    rows = wait_until(
        lambda: (
            (rows := json.loads(d.cli("status", "--json").stdout))[0]["replicas"][0]["version"]
            == rows[0]["last_version"]
            and rows
        ),
        what="the listing to show the replica's version",
    )
    assert rows[0]["replicas"] == [
        {"name": "r1", "version": rows[0]["last_version"], "journal_seq": 0, "lag_s": 0.0}
    ]


def test_table_status_and_metrics_show_each_replica(
    replica_daemon: Callable[..., Daemon], tmp_path: Path, files: Path
) -> None:
    from tests.daemon.test_metrics import samples

    d = replica_daemon(replica_toml(str(tmp_path / "replica")))
    db = files / "db.bin"
    db.write_bytes(b"\0" * 4096)
    d.client.add(db, backup="on-write")
    seq = 0
    for i in range(3):
        seq = d.client.notify_write(db, i, b"z")
    row = wait_until(
        lambda: (r := _replica_row(d, db))["journal_seq"] == seq and r["lag_s"] == 0 and r,
        what="records shipped",
    )
    table = d.cli("status", "--format", "table")
    assert table.returncode == 0, table.stderr
    line = f"replicas: r1 caught up (version {row['version'][:8]}, record {seq})"
    assert line in table.stdout, table.stdout
    got = samples(d)
    assert got[("filetwin_replica_up", (("replica", "r1"),))] == 1
    assert got[("filetwin_replica_lag_seconds", (("replica", "r1"),))] == 0
    assert got[("filetwin_replica_journal_seq", (("path", str(db)), ("replica", "r1")))] == seq
    age = got[("filetwin_replica_newest_version_age_seconds", (("replica", "r1"),))]
    assert 0 <= age < 60
