"""Heal from the nearest copy: a pack the primary lacks or holds damaged is read from
the replica, checked, the heal completes and the primary gets the pack back."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import Daemon, wait_until
from tests.replicas.conftest import replica_toml


def _caught_up(d: Daemon, path: Path) -> bool:
    row = d.client.status(path)
    [r] = row["replicas"]  # type: ignore[typeddict-item]
    return bool(r["version"] == row["last_version"] and r["lag_s"] == 0)


@pytest.mark.parametrize("harm", ["deleted", "damaged"])
def test_heal_reads_a_lost_pack_from_the_replica_and_repairs_the_primary(
    replica_daemon: Callable[..., Daemon], tmp_path: Path, files: Path, harm: str
) -> None:
    replica = tmp_path / "replica"
    d = replica_daemon(replica_toml(str(replica)))
    f = files / "precious.bin"
    good = bytes(range(256)) * 2048  # 512 KiB
    f.write_bytes(good)
    d.client.add(f, recovery="auto")
    wait_until(lambda: _caught_up(d, f), what="the version on the replica")
    packs = sorted(p for p in (d.state_dir / "repository" / "packs").rglob("*") if p.is_file())
    assert packs, "the version is in packs"
    originals = {p: p.read_bytes() for p in packs}
    for p in packs:
        if harm == "deleted":
            p.unlink()
        else:
            data = bytearray(originals[p])
            data[len(data) // 3] ^= 0x55
            p.write_bytes(bytes(data))
    # Without the replica this heal could not happen: the primary lacks every pack.
    bad = d.cli("check", "--read-data")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    # Silent corruption: same size and mtime, other bytes.
    st = f.stat()
    fd = os.open(f, os.O_WRONLY)
    try:
        os.pwrite(fd, b"\0" * 100, 1000)
        # The old mtime back before the close: a capture the close starts must
        # not see the new one (that is a save, rightly stored).
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(fd)
    d.client.request_recovery(f)  # the close may have started the heal already: either heals
    wait_until(lambda: f.read_bytes() == good, what="the heal")
    assert hashlib.sha256(f.read_bytes()).digest() == hashlib.sha256(good).digest()
    for p, data in originals.items():
        assert p.read_bytes() == data, f"{p} put back in the primary bit for bit"
    ok = d.cli("check", "--read-data")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    events = [e for e in d.client.events() if e["kind"] == "repaired-from-replica"]
    assert events and events[0]["ok"], events
    message = " ".join(e["message"] for e in events)
    assert "r1" in message and "put back in the primary" in message
    for p in packs:
        assert p.name in message
    # The replica kept its copy (it was only read).
    assert sorted(q.name for q in (replica / "hosts").rglob("packs/*/*")) >= sorted(
        p.name for p in packs
    )
