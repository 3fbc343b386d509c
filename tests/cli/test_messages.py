"""Messages that say exactly what happened (issue 12, point 6)."""

from __future__ import annotations

import re
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


def test_history_lists_journal_records_in_record_order(daemon: Daemon, files: Path) -> None:
    f = files / "db.bin"
    f.write_bytes(b"0" * 10)
    assert daemon.cli("add", str(f), "--backup", "on-write").returncode == 0
    c = daemon.client
    c.notify_write(f, 0, b"a")
    first_close = c.notify_close(f)
    c.notify_write(f, 1, b"b")
    mark = c.mark(f, "between")
    c.notify_write(f, 2, b"c")
    second_close = c.notify_close(f)
    assert first_close < mark < second_close
    r = daemon.cli("history", str(f))
    assert r.returncode == 0, r.stderr
    records = [ln.split() for ln in r.stdout.splitlines() if ln.lstrip().startswith("seq ")]
    assert [int(w[1]) for w in records] == [first_close, mark, second_close], r.stdout
    assert [w[3] for w in records] == ["close", "mark", "close"], r.stdout
    assert all(w[2].endswith("Z") for w in records), r.stdout


ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z")
OTHER_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(?!\.?\d*Z)[+-]\d\d:?\d\d")


def test_one_time_format_in_outputs(daemon: Daemon, files: Path, tmp_path: Path) -> None:
    f = files / "t.txt"
    f.write_text("one\n")
    assert daemon.cli("add", str(f)).returncode == 0
    outputs = [daemon.cli(*args).stdout for args in (("history", str(f)), ("events",), ("status",))]
    r = daemon.cli("restore", str(f), "--to", str(tmp_path / "t"))
    outputs.append(r.stdout)
    for text in outputs:
        assert ISO_Z.search(text) and not OTHER_TIME.search(text), text


def test_one_time_format_in_errors(daemon: Daemon, files: Path, tmp_path: Path) -> None:
    f = files / "t.txt"
    f.write_text("one\n")
    assert daemon.cli("add", str(f)).returncode == 0
    r = daemon.cli("restore", str(f), "--at", "2001-01-01T00:00:00Z", "--to", str(tmp_path / "t"))
    assert r.returncode == 1
    assert ISO_Z.search(r.stderr) and not OTHER_TIME.search(r.stderr), r.stderr
