"""Restore on a new host from the replica alone; check --replica names what is missing."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from tests.helpers import Daemon, run_cli, wait_until
from tests.replicas.conftest import HOST, replica_toml


def _caught_up(d: Daemon, path: Path, seq: int | None = None) -> bool:
    row = d.client.status(path)
    [r] = row["replicas"]  # type: ignore[typeddict-item]
    done = r["version"] == row["last_version"] and r["lag_s"] == 0
    return done and (seq is None or r["journal_seq"] >= seq)


def test_every_file_and_moment_comes_back_from_the_replica_alone(
    replica_daemon: Callable[..., Daemon], tmp_path: Path, files: Path
) -> None:
    replica = tmp_path / "replica"
    d = replica_daemon(replica_toml(str(replica)))
    plain = files / "plain.txt"
    plain.write_bytes(b"v1\n")
    d.client.add(plain)
    plain.write_bytes(b"v2: the one that counts\n")
    d.client.backup(plain)
    db = files / "db.bin"
    db.write_bytes(b"." * 4096)
    d.client.add(db, backup="on-write")
    d.client.notify_write(db, 0, b"AAAA")
    d.client.mark(db, "m1")
    seq = 0
    for i in range(1, 20):
        seq = d.client.notify_write(db, i * 100, b"B" * 50)
    wait_until(lambda: _caught_up(d, plain) and _caught_up(d, db, seq), what="replica caught up")
    final = bytearray(b"." * 4096)
    final[0:4] = b"AAAA"
    at_mark = bytes(final)
    for i in range(1, 20):
        final[i * 100 : i * 100 + 50] = b"B" * 50
    d.stop()
    # The machine is lost: state directory and files gone.
    shutil.rmtree(d.state_dir)
    shutil.rmtree(files)
    fresh = ["--state-dir", str(tmp_path / "new-state")]
    hosts = run_cli("hosts", "--from", str(replica), "--json")
    assert hosts.returncode == 0, hosts.stderr
    assert json.loads(hosts.stdout) == [{"host": HOST, "this": True}]
    hist = run_cli(*fresh, "history", str(db), "--from", str(replica), "--json", "--journal")
    assert hist.returncode == 0, hist.stderr
    assert json.loads(hist.stdout)["journal"]["last_seq"] == seq
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli(*fresh, "restore", str(plain), "--from", str(replica), "--to", str(out / "p"))
    assert r.returncode == 0, r.stderr
    assert (out / "p").read_bytes() == b"v2: the one that counts\n"
    r = run_cli(*fresh, "restore", str(db), "--from", str(replica), "--to", str(out / "db"))
    assert r.returncode == 0, r.stderr
    assert (out / "db").read_bytes() == bytes(final)
    r = run_cli(
        *fresh, "restore", str(db), "--from", str(replica), "--at", "mark:m1", "--to",
        str(out / "m1"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (out / "m1").read_bytes() == at_mark
    # Every entry at once, each to its own path under the directory given.
    r = run_cli(*fresh, "restore", "--all", "--from", str(replica), "--to", str(out / "all"))
    assert r.returncode == 0, r.stderr
    assert "restored 2 of 2 files" in r.stdout
    assert (out / "all" / str(plain).lstrip("/")).read_bytes() == b"v2: the one that counts\n"
    assert (out / "all" / str(db).lstrip("/")).read_bytes() == bytes(final)
    r = run_cli(*fresh, "restore", "--all", str(files), "--from", str(replica), "--to",
                str(out / "by-mark"), "--at", "mark:m1", "--json")  # fmt: skip
    assert r.returncode == 1, r.stderr  # plain.txt has no journal, hence no mark
    done = json.loads(r.stdout)
    assert [f["path"] for f in done["failed"]] == [str(plain)]
    assert "no journal" in done["failed"][0]["error"]
    assert (out / "by-mark" / str(db).lstrip("/")).read_bytes() == at_mark
    r = run_cli(*fresh, "restore", str(db), "--from", str(replica), "--at", f"seq:{seq + 1}",
                "--to", str(out / "x"))  # fmt: skip
    assert r.returncode == 1 and "no record" in r.stderr and not (out / "x").exists()
    assert not (tmp_path / "new-state").exists(), "a restore from a replica creates nothing"
    # Bad usage: no --to, an unknown host.
    r = run_cli(*fresh, "restore", str(db), "--from", str(replica))
    assert r.returncode == 2 and "--to" in r.stderr
    r = run_cli(*fresh, "history", str(db), "--from", str(replica), "--host", "nobody")
    assert r.returncode == 1 and "'nobody'" in r.stderr and HOST in r.stderr
    assert not (replica / "hosts" / "nobody").exists()


def test_check_replica_reports_missing_and_damaged_objects(
    replica_daemon: Callable[..., Daemon], tmp_path: Path, files: Path
) -> None:
    replica = tmp_path / "replica"
    d = replica_daemon(replica_toml(str(replica)))
    f = files / "f.txt"
    f.write_bytes(b"x" * 10000)
    d.client.add(f)
    wait_until(lambda: _caught_up(d, f), what="replica caught up")
    ok = d.cli("--config", str(d.config_path), "check", "--replica", "r1")
    assert ok.returncode == 0, ok.stderr
    copy = replica / "hosts" / HOST
    [pack] = list((copy / "packs").rglob("*"))[-1:]
    assert pack.is_file()
    data = bytearray(pack.read_bytes())
    data[10] ^= 0xFF
    pack.write_bytes(bytes(data))
    [manifest] = list((copy / "manifests").rglob("*.json"))
    manifest.unlink()
    bad = d.cli("--config", str(d.config_path), "check", "--replica", "r1", "--json")
    assert bad.returncode == 1
    problems = {(p["kind"], p["object"]) for p in json.loads(bad.stdout)["problems"]}
    rel = lambda p: str(p.relative_to(copy))  # noqa: E731
    assert problems == {("damaged-object", rel(pack)), ("missing-object", rel(manifest))}
    unknown = d.cli("--config", str(d.config_path), "check", "--replica", "nope")
    assert unknown.returncode == 2 and "nope" in unknown.stderr
