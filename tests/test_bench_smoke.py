"""The benchmark harness runs end to end on a tiny dataset, so that it never rots."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick(tmp_path: Path) -> None:
    peers = [] if all(shutil.which(t) for t in ("restic", "borg", "rsync")) else ["--skip-peers"]
    if not Path("/usr/bin/time").exists():
        pytest.skip("/usr/bin/time is needed to measure the peers' memory")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--no-install",
            *peers,
            "--workdir",
            str(tmp_path / "work"),
            "--out",
            str(tmp_path / "results"),
            "--readme",
            str(tmp_path / "README.md"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads((tmp_path / "results" / "quick.json").read_text())
    ft = out["peers"]["filetwin"]
    assert ft["first_backup_s"]["median"] > 0
    assert ft["large_change_added_mb"]["median"] < 4  # only the changed chunks were stored
    assert out["own"]["latency_4k"]["n"] == 20
    assert out["own"]["scale"]["status_rows"] == 1200
    # on-write: journaled vs plain writes, any-moment restore, 1 MiB made durable
    j = out["journal"]
    assert set(j["throughput"]) == {"batch_4k", "batch_1m", "always_4k", "always_1m"}
    for r in j["throughput"].values():
        assert r["journaled"]["writes_per_s"]["median"] > 0
        assert r["plain"]["writes_per_s"]["median"] > 0
        assert r["ratio"] > 0
    assert "plain_fdatasync" in j["throughput"]["always_4k"]
    assert j["restore"]["records"] == 1000
    assert j["restore"]["replayed"] > 900  # almost the whole journal is replayed
    assert j["restore"]["api_s"]["median"] > 0 and j["restore"]["library_s"]["median"] > 0
    assert j["large_change"]["journal_added_mb"]["median"] < 2.1  # the 1 MiB, not the file
    assert "### on-write (journal)" in (tmp_path / "README.md").read_text()
    if "fuse" in out:
        fuse = out["fuse"]
        # every 4 KiB write made through the interceptor is a journal record
        assert fuse["interceptor"]["captured_writes"] >= 2000
        assert "### interceptor (FUSE)" in (tmp_path / "README.md").read_text()
