"""The periodic safety pass: objects deleted or damaged in the replica behind
filetwin's back are put again without a restart, and an event names them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.helpers import Daemon, wait_until
from tests.replicas.conftest import HOST, replica_toml


def _caught_up(d: Daemon, path: Path, seq: int = 0) -> bool:
    row = d.client.status(path)
    [r] = row["replicas"]  # type: ignore[typeddict-item]
    return bool(r["version"] == row["last_version"] and r["lag_s"] == 0 and r["journal_seq"] >= seq)


def test_deleted_and_damaged_replica_objects_are_put_again(
    replica_daemon: Callable[..., Daemon], tmp_path: Path, files: Path
) -> None:
    replica = tmp_path / "replica"
    d = replica_daemon(replica_toml(str(replica), safety_pass_s=0.5))
    f = files / "f.bin"
    f.write_bytes(bytes(range(256)) * 400)
    d.client.add(f)
    db = files / "db.bin"
    db.write_bytes(b"\0" * 4096)
    d.client.add(db, backup="on-write")
    seq = 0
    for i in range(5):
        seq = d.client.notify_write(db, i * 10, b"x" * 10)
    wait_until(lambda: _caught_up(d, f) and _caught_up(d, db, seq), what="replica caught up")
    copy = replica / "hosts" / HOST
    packs = sorted(p for p in (copy / "packs").rglob("*") if p.is_file())
    [manifest] = [m for m in (copy / "manifests").rglob("*.json") if m.stat().st_size][:1]
    journal = sorted(p for p in (copy / "journals").rglob("*-*") if p.is_file())
    assert packs and journal
    # Repository objects come back bit for bit; a journal object is sealed again
    # (a fresh salt) with the same records: check --replica opens it below.
    originals = {p: p.read_bytes() for p in [*packs, manifest]}
    packs[0].unlink()
    manifest.write_bytes(b"{}")
    journal[-1].unlink()
    assert not packs[0].exists() and not journal[-1].exists()  # (put again within 0.5 s)

    def repaired() -> bool:
        same = all(p.exists() and p.read_bytes() == data for p, data in originals.items())
        return same and journal[-1].exists()

    wait_until(repaired, 30, "the safety pass to put the objects again")
    events = [e for e in d.client.events() if e["kind"] == "replica-repaired"]
    message = " ".join(e["message"] for e in events)
    assert all(e["ok"] for e in events), events
    for p in (packs[0], manifest, journal[-1]):
        assert str(p.relative_to(copy)) in message, message
    ok = d.cli("--config", str(d.config_path), "check", "--replica", "r1")
    assert ok.returncode == 0, ok.stdout + ok.stderr
