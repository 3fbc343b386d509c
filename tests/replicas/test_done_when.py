"""Issue 11's "Done when", end to end on a real S3 server (SeaweedFS on 127.0.0.1):
a config with a [[replica]] on the bucket, files protected on-close and on-write,
the whole state directory and the files deleted, and every file back from the
bucket on a clean state directory, any moment included, hashes checked."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import Daemon, run_cli, wait_until
from tests.replicas.conftest import HOST, replica_toml
from tests.s3server import S3Server, fresh_location


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _caught_up(d: Daemon, path: Path, seq: int = 0) -> bool:
    row = d.client.status(path)
    [r] = row["replicas"]  # type: ignore[typeddict-item]
    return bool(r["version"] == row["last_version"] and r["lag_s"] == 0 and r["journal_seq"] >= seq)


@pytest.mark.usefixtures("s3_env")
def test_every_file_and_moment_back_from_the_bucket_on_a_clean_state_directory(
    replica_daemon: Callable[..., Daemon],
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    files: Path,
) -> None:
    location = fresh_location(s3_server)
    d = replica_daemon(replica_toml(location, name="offsite"))
    # on-close: a document saved three times, and a second file.
    doc = files / "report.txt"
    saves = [b"draft one\n", b"draft two, longer\n" * 50, bytes(range(256)) * 300]
    doc.write_bytes(saves[0])
    d.client.add(doc)
    versions = []
    for content in saves[1:]:
        doc.write_bytes(content)
        versions.append(d.client.backup(doc)["id"])
    other = files / "other.bin"
    other.write_bytes(b"\x01\x02" * 70000)
    d.client.add(other)
    # on-write: journaled writes, a mark in the middle.
    db = files / "app.db"
    state = bytearray(b"\0" * 65536)
    db.write_bytes(bytes(state))
    d.client.add(db, backup="on-write")
    moments: dict[str, str] = {}
    seq = 0
    for i in range(40):
        data = bytes([i + 1]) * 300
        seq = d.client.notify_write(db, i * 1000, data)
        state[i * 1000 : i * 1000 + 300] = data
        moments[f"seq:{seq}"] = _sha(bytes(state))
        if i == 19:
            d.client.mark(db, "half")
            moments["mark:half"] = _sha(bytes(state))
    final_db = _sha(bytes(state))
    wait_until(
        lambda: all(_caught_up(d, p) for p in (doc, other)) and _caught_up(d, db, seq),
        60,
        "the replica to hold everything",
    )
    expected_versions = {
        v["id"]: v["hash"] for v in d.client.history(doc)
    }  # the daemon's own record, to compare with what the bucket says
    d.stop()

    # The machine is lost: state directory and files gone.
    shutil.rmtree(d.state_dir)
    shutil.rmtree(files)
    clean = ["--state-dir", str(tmp_path / "clean-state")]
    out = tmp_path / "back"
    out.mkdir()

    hosts = run_cli(*clean, "hosts", "--from", location, "--json")
    assert hosts.returncode == 0, hosts.stderr
    assert json.loads(hosts.stdout) == [{"host": HOST, "this": True}]
    hist = run_cli(*clean, "history", str(doc), "--from", location, "--json")
    assert hist.returncode == 0, hist.stderr
    listed = {v["id"]: v["hash"] for v in json.loads(hist.stdout)}
    assert listed == expected_versions

    def restore(path: Path, dest: str, *how: str) -> bytes:
        r = run_cli(*clean, "restore", str(path), "--from", location, *how, "--to", str(out / dest))
        assert r.returncode == 0, r.stderr
        return (out / dest).read_bytes()

    assert _sha(restore(doc, "doc")) == _sha(saves[-1])
    for vid, content in zip(versions, saves[1:], strict=True):
        assert _sha(restore(doc, f"doc-{vid}", "--version", vid)) == _sha(content)
    assert _sha(restore(other, "other")) == _sha(b"\x01\x02" * 70000)
    assert _sha(restore(db, "db")) == final_db
    for n, (moment, digest) in enumerate(sorted(moments.items())):
        if n % 7 and moment != "mark:half":
            continue  # a sample of the moments keeps the test short; the mark always
        assert _sha(restore(db, f"db-{n}", "--at", moment)) == digest, moment
    assert not (tmp_path / "clean-state").exists(), "restoring from the bucket writes no state"

    # Everything at once, as a new user gets a whole machine back.
    r = run_cli(*clean, "restore", "--all", "--from", location, "--to", str(out / "all"), "--json")
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout)
    assert done["files"] == 3 and done["failed"] == []
    back = {p: _sha((out / "all" / str(p).lstrip("/")).read_bytes()) for p in (doc, other, db)}
    assert back == {doc: _sha(saves[-1]), other: _sha(b"\x01\x02" * 70000), db: final_db}
    assert not (tmp_path / "clean-state").exists(), "restoring from the bucket writes no state"
