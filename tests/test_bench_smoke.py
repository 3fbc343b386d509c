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
