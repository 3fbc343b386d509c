"""One exit code per condition across commands (issue 12, point 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Daemon, run_cli

#: every command that names one entry, with what else it needs
PER_ENTRY = (
    ("history",),
    ("status",),
    ("restore",),
    ("backup",),
    ("recover",),
    ("verify",),
    ("pause",),
    ("resume",),
    ("remove",),
    ("update", "--keep", "3"),
)


def test_not_protected_exits_1_from_every_command(daemon: Daemon, files: Path) -> None:
    stranger = files / "stranger.txt"
    stranger.write_text("never added\n")
    for command, *rest in PER_ENTRY:
        r = daemon.cli(command, str(stranger), *rest)
        assert r.returncode == 1, (command, r.returncode, r.stderr)
        # restore says what it looked for: no versions of it in the repository
        assert "not protected" in r.stderr or "has no versions" in r.stderr, (command, r.stderr)
        assert "Traceback" not in r.stderr


@pytest.mark.parametrize("command", ["history", "restore"])
def test_not_protected_exits_1_without_a_daemon(command: str, daemon: Daemon, files: Path) -> None:
    other = files / "protected.txt"
    other.write_text("x\n")
    assert daemon.cli("add", str(other)).returncode == 0
    daemon.stop()
    r = run_cli("--state-dir", str(daemon.state_dir), command, str(files / "stranger.txt"))
    assert r.returncode == 1, (r.returncode, r.stderr)


def test_bad_usage_exits_2(daemon: Daemon, files: Path) -> None:
    f = files / "f.txt"
    f.write_text("x\n")
    assert daemon.cli("add", str(f)).returncode == 0
    for args in (
        ("restore", str(f), "--version", "abcd", "--at", "seq:1"),
        ("restore", str(f), "--at", "not a time"),
        ("update", str(f)),
        ("status", "--format", "xml"),
    ):
        r = daemon.cli(*args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
