"""`filetwin status` and `verify` for people and scripts (issue 12, point 3):
paths never cut, a summary line, plain/TSV when piped, filters, exit codes."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Daemon, on_terminal, wait_until

BOX = set("│┃━─┏┓┗┛┡┩└┘┌┐╇╈")


@pytest.fixture
def three(daemon: Daemon, files: Path) -> tuple[Daemon, Path, list[Path]]:
    """Three entries in a deep directory (paths far past 80 columns), one missing."""
    deep = files / ("a-rather-long-directory-name-" * 3) / "and-another-level-of-it"
    deep.mkdir(parents=True)
    paths = [deep / f"file-{i:03d}.txt" for i in range(3)]
    for p in paths:
        p.write_text(f"{p.name}\n")
    assert daemon.cli("add", *map(str, paths)).returncode == 0
    paths[2].unlink()
    wait_until(lambda: daemon.client.status(paths[2])["state"] == "missing", what="missing")
    return daemon, deep, paths


def test_piped_status_is_plain_whole_paths_and_a_summary(
    three: tuple[Daemon, Path, list[Path]],
) -> None:
    daemon, _deep, paths = three
    r = daemon.cli("status")
    assert r.returncode == 0, r.stderr
    assert not BOX & set(r.stdout), r.stdout
    lines = r.stdout.splitlines()
    rows = [ln for ln in lines if ln.startswith(("watching", "missing"))]
    assert sorted(ln.rsplit("  ", 1)[1] for ln in rows) == [str(p) for p in paths]
    assert lines[-1].startswith("3 entries: 1 missing, 2 watching; last results:"), lines[-1]
    assert "1 need attention" in lines[-1]


def test_tsv_has_a_header_and_the_path_last(three: tuple[Daemon, Path, list[Path]]) -> None:
    daemon, _deep, paths = three
    r = daemon.cli("status", "--format", "tsv")
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split("\t")[0] == "state" and header.split("\t")[-1] == "path"
    cells = [row.split("\t") for row in rows]
    assert all(len(c) == len(header.split("\t")) for c in cells)
    assert {c[-1]: c[0] for c in cells} == {
        str(paths[0]): "watching",
        str(paths[1]): "watching",
        str(paths[2]): "missing",
    }
    r = daemon.cli("status", "--format", "json")
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 3


def test_filters_and_check_exit(three: tuple[Daemon, Path, list[Path]], files: Path) -> None:
    daemon, deep, paths = three
    other = files / "elsewhere.txt"
    other.write_text("x\n")
    assert daemon.cli("add", str(other)).returncode == 0

    def shown(*args: str) -> list[str]:
        r = daemon.cli("status", *args, "--json")
        assert r.returncode == 0, r.stderr
        return sorted(e["path"] for e in json.loads(r.stdout))

    assert shown("--state", "missing") == [str(paths[2])]
    assert shown("--failed") == [str(paths[2])]
    assert shown("--state", "watching", "--state", "missing") == sorted(
        [str(other)] + [str(p) for p in paths]
    )
    assert shown(str(deep)) == [str(p) for p in paths]
    assert shown(str(deep) + "/") == [str(p) for p in paths]
    assert shown(str(paths[0])) == [str(paths[0])]
    r = daemon.cli("status", str(files / "a-rather"))  # not a directory prefix
    assert r.returncode == 1 and "not protected" in r.stderr

    assert daemon.cli("status").returncode == 0  # without --check: 0 as ever
    r = daemon.cli("status", "--check")
    assert r.returncode == 1 and "1 need attention" in r.stdout
    assert daemon.cli("status", "--check", "--json").returncode == 1
    assert daemon.cli("status", "--check", str(other)).returncode == 0
    assert daemon.cli("status", "--check", "--state", "watching").returncode == 0


def test_table_on_a_narrow_terminal_never_cuts_a_path(
    three: tuple[Daemon, Path, list[Path]],
) -> None:
    daemon, _deep, paths = three
    text = in_terminal(daemon, 80, "status")
    assert "…" not in text, text
    lines = text.splitlines()
    assert lines[0].split()[0] == "state" and lines[0].split()[-1] == "path", lines[0]
    # Every character of every path is printed, in one piece (the terminal wraps it).
    for p in paths:
        assert str(p) in text, (p, text)
    assert "3 entries: 1 missing, 2 watching" in lines[-1]


def test_verify_of_a_missing_file_exits_1_with_a_summary(
    three: tuple[Daemon, Path, list[Path]],
) -> None:
    daemon, _deep, paths = three
    r = daemon.cli("verify")
    assert r.returncode == 1, (r.stdout, r.stderr)
    last = r.stdout.splitlines()[-1]
    assert last == "verified 3 files: 1 missing, 2 ok; 1 need attention", r.stdout
    r = daemon.cli("verify", str(paths[0]))
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "verified 1 file: 1 ok"


def in_terminal(daemon: Daemon, columns: int, *args: str) -> str:
    """The CLI's output on a pseudo-terminal ``columns`` wide (TERM=dumb: no animation)."""
    _code, text = on_terminal(daemon.state_dir, *args, term="dumb", columns=columns)
    return text.replace("\r", "")


def _many(daemon: Daemon, files: Path, count: int) -> list[Path]:
    paths = [files / f"f{i:03d}" for i in range(count)]
    for p in paths:
        p.write_text(p.name)
    assert daemon.cli("add", *map(str, paths)).returncode == 0
    return paths


def test_api_filters_and_pages_on_the_daemon(daemon: Daemon, files: Path) -> None:
    """Issue 13 point 5: limit/offset in path order, X-Total-Count, filters, summary."""
    paths = _many(daemon, files, 12)
    assert daemon.cli("pause", str(paths[3])).returncode == 0
    raw, total = daemon.client.status_page(offset=5, limit=4)
    assert total == 12
    assert [r["path"] for r in json.loads(raw)] == [str(p) for p in paths[5:9]]
    raw, total = daemon.client.status_page(state="paused")
    assert total == 1 and json.loads(raw)[0]["path"] == str(paths[3])
    raw, total = daemon.client.status_page(prefix=files / "f00")
    assert total == 0  # a path prefix is whole components, not a string prefix
    raw, total = daemon.client.status_page(prefix=files)
    assert total == 12
    summary = daemon.client.status_summary(state="watching,paused")
    assert summary["total"] == 12 and summary["states"] == {"paused": 1, "watching": 11}
    # A row written since the last answer is answered as it is now.
    assert daemon.cli("resume", str(paths[3])).returncode == 0
    assert daemon.client.status_page(state="paused")[1] == 0
    r = daemon.cli("status", "--json", "--state", "paused")
    assert r.returncode == 0 and json.loads(r.stdout) == []


def test_bad_filters_are_refused(daemon: Daemon) -> None:
    from filetwin import UsageError

    for query in ("state=sleeping", "prefix=relative", "source=nobody", "limit=-1", "x=1"):
        with pytest.raises(UsageError):
            daemon.client.request("GET", f"/status?{query}")
    r = daemon.cli("status", "--state", "sleeping")
    assert r.returncode == 2 and "sleeping" in r.stderr


def test_terminal_table_pages_and_says_how_many_more(daemon: Daemon, files: Path) -> None:
    _many(daemon, files, 60)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "filetwin", "--state-dir", str(daemon.state_dir), "status"],
        stdout=follower,
        stderr=subprocess.PIPE,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait() == 0
    text = b"".join(chunks).decode()
    assert text.count(str(files) + "/f") == 50
    assert "… 10 more (use --all, --limit N or --json)" in text
    assert "60 entries: 60 watching" in text
    piped = daemon.cli("status")  # plain output prints every row
    assert sum(str(files) + "/f" in ln for ln in piped.stdout.splitlines()) == 60
    limited = daemon.cli("status", "--limit", "7")
    assert sum(str(files) + "/f" in ln for ln in limited.stdout.splitlines()) == 7
    assert "… 53 more" in limited.stdout
