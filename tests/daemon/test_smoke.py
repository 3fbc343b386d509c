from __future__ import annotations

from pathlib import Path

from tests.helpers import Daemon, wait_until


def test_add_edit_history_restore(daemon: Daemon, files: Path) -> None:
    f = files / "notes.txt"
    f.write_text("one\n")
    r = daemon.cli("add", str(f))
    assert r.returncode == 0, r.stderr
    f.write_text("two\n")
    wait_until(lambda: len(daemon.client.history(f)) == 2, what="second version")
    first = daemon.client.history(f)[0]
    r = daemon.cli("restore", str(f), "--version", first["id"])
    assert r.returncode == 0, r.stderr
    assert f.read_text() == "one\n"
