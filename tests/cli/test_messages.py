"""Messages that say exactly what happened (issue 12, point 6)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import Daemon, run_cli


def test_restore_names_its_moment_and_errors_hint_at_history(
    daemon: Daemon, files: Path, tmp_path: Path
) -> None:
    f = files / "log.bin"
    f.write_bytes(b"0000000000")
    assert daemon.cli("add", str(f), "--backup", "on-write").returncode == 0
    with f.open("r+b") as fh:
        fh.write(b"abc")
    seq = daemon.client.notify_write(f, 0, b"abc")
    daemon.client.notify_write(f, 3, b"def")
    out = tmp_path / "then.bin"
    r = daemon.cli("restore", str(f), "--at", f"seq:{seq}", "--to", str(out))
    assert r.returncode == 0, r.stderr
    assert f"+ journal to seq {seq} (" in r.stdout, r.stdout
    assert out.read_bytes() == b"abc0000000"
    for args in (("--version", "deadbeef"), ("--at", "seq:999999"), ("--at", "2000-01-01")):
        r = daemon.cli("restore", str(f), *args, "--to", str(tmp_path / "x"))
        assert r.returncode in (1, 2), r.stderr
        assert f"filetwin history {f}" in r.stderr, (args, r.stderr)


def test_no_daemon_hint_names_the_state_dir(tmp_path: Path) -> None:
    r = run_cli("--state-dir", str(tmp_path / "s"), "status")
    assert r.returncode == 3
    assert f"start one with `filetwin --state-dir {tmp_path}/s daemon`" in r.stderr
