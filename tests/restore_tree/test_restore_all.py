"""``filetwin restore --all --to DIR``: every entry of this machine's repository
into a tree, each to DIR/<its absolute path>, the others going on when one fails."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.helpers import Daemon


def under(root: Path, entry: Path) -> Path:
    return root / str(entry).lstrip("/")


def _protect(daemon: Daemon, files: Path) -> dict[Path, bytes]:
    """Three entries in nested directories, one of them on-write with journaled
    writes after its version: their newest states."""
    one = files / "a" / "one.txt"
    two = files / "b" / "sub" / "two.bin"
    three = files / "c.txt"
    for p in (one, two, three):
        p.parent.mkdir(parents=True, exist_ok=True)
    one.write_bytes(b"first\n")
    three.write_bytes(b"three\n" * 1000)
    two.write_bytes(b"." * 8192)
    daemon.client.add(one, three)
    one.write_bytes(b"second, the newest\n")
    daemon.client.backup(one)
    daemon.client.add(two, backup="on-write")
    daemon.client.notify_write(two, 100, b"JOURNALED")
    newest_two = bytearray(b"." * 8192)
    newest_two[100:109] = b"JOURNALED"
    return {one: b"second, the newest\n", two: bytes(newest_two), three: b"three\n" * 1000}


def test_every_entry_comes_back_under_the_directory(
    daemon: Daemon, files: Path, tmp_path: Path
) -> None:
    newest = _protect(daemon, files)
    out = tmp_path / "out"
    r = daemon.cli("restore", "--all", "--to", str(out), "--json")
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout)
    assert done["files"] == 3 and done["failed"] == [] and done["to"] == str(out)
    assert sorted(x["path"] for x in done["restored"]) == sorted(str(p) for p in newest)
    for entry, content in newest.items():
        assert under(out, entry).read_bytes() == content, entry
    assert done["bytes"] == sum(len(c) for c in newest.values())
    # PATH narrows it to the entries under a directory.
    r = daemon.cli("restore", "--all", str(files / "b"), "--to", str(tmp_path / "only-b"))
    assert r.returncode == 0, r.stderr
    assert "restored 1 of 1 files" in r.stdout
    [written] = [p for p in (tmp_path / "only-b").rglob("*") if p.is_file()]
    assert written == under(tmp_path / "only-b", files / "b" / "sub" / "two.bin")


def test_bad_input_is_refused_and_writes_nothing(
    daemon: Daemon, files: Path, tmp_path: Path
) -> None:
    _protect(daemon, files)
    out = tmp_path / "out"
    for args, says in (
        (["restore", "--all"], "--to DIR"),
        (["restore", "--all", "--to", str(out), "--version", "abcd"], "--at TIME"),
        (["restore", "--to", str(out)], "name the file to restore"),
        (["restore", "--all", "--to", str(out), "--at", "yesterday-ish"], "is no time"),
        (["restore", "--all", "--to", str(out), "--at", "2026-13-45"], "time"),
        (["restore", "--all", "--to", str(out), "--at", "seq:x"], "bad sequence number"),
    ):
        r = daemon.cli(*args)
        assert r.returncode == 2, (args, r.returncode, r.stdout)
        assert says in r.stderr, (args, r.stderr)
    r = daemon.cli("restore", "--all", str(tmp_path / "nothing-here"), "--to", str(out))
    assert r.returncode == 1 and "no entry under" in r.stderr
    assert not out.exists()


def test_a_symlink_in_the_tree_is_never_followed(
    daemon: Daemon, files: Path, tmp_path: Path
) -> None:
    newest = _protect(daemon, files)
    out = tmp_path / "out"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # An attacker who can write in the destination plants a link where a
    # directory of the tree goes.
    first = Path(str(files).lstrip("/")).parts[0]
    out.mkdir()
    (out / first).symlink_to(elsewhere)
    r = daemon.cli("restore", "--all", "--to", str(out), "--json")
    assert r.returncode == 1
    done = json.loads(r.stdout)
    assert done["restored"] == [] and len(done["failed"]) == len(newest)
    assert all(f["type"] == "UnsafePath" and "symbolic link" in f["error"] for f in done["failed"])
    assert list(elsewhere.rglob("*")) == [], "a file was written through the link"
    # A link in the part of --to that exists: refused before anything is made.
    (tmp_path / "to-link").symlink_to(elsewhere)
    r = daemon.cli("restore", "--all", "--to", str(tmp_path / "to-link" / "new" / "dir"))
    assert r.returncode == 1 and "symbolic link" in r.stderr, r.stderr
    assert list(elsewhere.rglob("*")) == []


def test_one_entry_failing_leaves_the_others_restored(
    daemon: Daemon, files: Path, tmp_path: Path
) -> None:
    newest = _protect(daemon, files)
    out = tmp_path / "out"
    blocked = files / "c.txt"
    under(out, blocked).mkdir(parents=True)  # a directory where the file goes
    r = daemon.cli("restore", "--all", "--to", str(out))
    assert r.returncode == 1
    assert f"filetwin: {blocked}:" in r.stderr and "1 file(s) not restored" in r.stderr
    assert "restored 2 of 3 files" in r.stdout
    for entry, content in newest.items():
        if entry != blocked:
            assert under(out, entry).read_bytes() == content
    assert under(out, blocked).is_dir() and not os.listdir(under(out, blocked))
