"""Progress on long operations, on a terminal only (issue 12, point 4)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import Daemon, on_terminal

#: what rich's progress display prints (a bar's bytes, an object count, a spinner)
BYTES = re.compile(r"\d+(\.\d+)?/\d+(\.\d+)? ?[kMG]?B")


def in_terminal(state_dir: Path, *args: str) -> str:
    """Run the CLI on a pseudo-terminal (TERM=xterm: rich animates); return its output."""
    code, text = on_terminal(state_dir, *args, term="xterm", columns=160)
    assert code == 0, text
    return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", text.replace("\r", "\n"))  # cursor moves


def test_add_reports_each_file_under_a_progress_bar(daemon: Daemon, files: Path) -> None:
    paths = [files / f"f{i}.bin" for i in range(3)]
    for p in paths:
        p.write_bytes(os.urandom(300_000))
    text = in_terminal(daemon.state_dir, "add", *map(str, paths))
    assert "adding 3 files" in text, text
    assert BYTES.search(text) and "900.0/900.0 kB" in text, text
    for p in paths:
        lines = [ln for ln in text.splitlines() if ln.startswith(f"protecting {p} ")]
        assert len(lines) == 1, text  # each file once, as it was done
        assert "first version " in lines[0]

    more = files / "g.bin"
    more.write_bytes(b"x" * 1000)
    r = daemon.cli("add", str(more))  # piped: the lines, no progress
    assert r.returncode == 0
    assert r.stdout == f"protecting {more} (on-close, manual); first version " + (
        daemon.client.status(more)["last_version"] + "\n"
    ), r.stdout


def test_restore_shows_bytes_written(daemon: Daemon, files: Path, tmp_path: Path) -> None:
    f = files / "big.bin"
    f.write_bytes(os.urandom(2_000_000))
    assert daemon.cli("add", str(f)).returncode == 0
    dest = tmp_path / "out.bin"
    text = in_terminal(daemon.state_dir, "restore", str(f), "--to", str(dest))
    assert f"restoring {dest}" in text and "2.0/2.0 MB" in text, text
    assert f"bytes) to {dest}" in text
    assert dest.read_bytes() == f.read_bytes()
    r = daemon.cli("restore", str(f), "--to", str(tmp_path / "again.bin"))
    assert r.returncode == 0 and "restoring" not in r.stdout and len(r.stdout.splitlines()) == 1


def test_verify_shows_each_entry_then_its_summary(daemon: Daemon, files: Path) -> None:
    paths = [files / f"v{i}.txt" for i in range(3)]
    for p in paths:
        p.write_text("content\n" * 100)
    assert daemon.cli("add", *map(str, paths)).returncode == 0
    text = in_terminal(daemon.state_dir, "verify")
    assert "verifying 3 files" in text, text
    for p in paths:
        assert sum(1 for ln in text.splitlines() if ln.startswith(f"ok       {p}:")) == 1, text
    assert "verified 3 files: 3 ok" in text.splitlines()[-1] or "verified 3 files: 3 ok" in text
    r = daemon.cli("verify")
    assert r.returncode == 0 and "verifying" not in r.stdout
    assert len(r.stdout.splitlines()) == 4 and r.stdout.splitlines()[-1] == (
        "verified 3 files: 3 ok"
    )
    assert "verifying" not in daemon.cli("verify", "--json").stdout


def test_check_read_data_counts_objects(daemon: Daemon, files: Path) -> None:
    f = files / "c.bin"
    f.write_bytes(os.urandom(100_000))
    assert daemon.cli("add", str(f)).returncode == 0
    text = in_terminal(daemon.state_dir, "check", "--read-data")
    assert "checking objects" in text and re.search(r"\b(\d+)/\1\b", text), text
    assert "is healthy (all data read)" in text
    r = daemon.cli("check", "--read-data")
    assert r.returncode == 0 and "checking" not in r.stdout + r.stderr
    assert r.stdout.endswith("is healthy (all data read)\n")


def test_backup_shows_the_bytes_read(daemon: Daemon, files: Path) -> None:
    f = files / "b.bin"
    f.write_bytes(os.urandom(1000))
    daemon.client.add(f)
    f.write_bytes(os.urandom(3_000_000))
    text = in_terminal(daemon.state_dir, "backup", str(f))
    assert "backing up b.bin" in text and "3.0/3.0 MB" in text, text
    assert f"of {f} stored (3000000 bytes)" in text, text
    piped = subprocess.run(
        [sys.executable, "-m", "filetwin", "--state-dir", str(daemon.state_dir), "backup", str(f)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert piped.returncode == 0 and "backing up" not in piped.stdout + piped.stderr
