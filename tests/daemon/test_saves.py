"""On-close capture against a real daemon: every way programs save yields a version
with exactly the content saved, bursts leave no torn versions, and a vanished file
is noticed and picked up again."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pytest

from tests.helpers import Daemon, stored_chunks, wait_until


def digest(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def version_with(daemon: Daemon, f: Path, data: bytes) -> dict[str, Any]:
    """Wait until the newest version of ``f`` holds ``data``; return it."""

    def newest() -> dict[str, Any] | None:
        history = daemon.client.history(f)
        return history[-1] if history and history[-1]["hash"] == digest(data) else None

    found: dict[str, Any] = wait_until(newest, what=f"a version of {f} holding {data[:40]!r}")
    return found


def restored_bytes(daemon: Daemon, f: Path, version: str, dest: Path) -> bytes:
    r = daemon.cli("restore", str(f), "--version", version, "--to", str(dest))
    assert r.returncode == 0, r.stderr
    return dest.read_bytes()


def save_in_place(f: Path, data: bytes, sync: bool = False) -> None:
    with f.open("r+b") as fh:
        fh.write(data)
        fh.truncate()
        if sync:
            fh.flush()
            os.fsync(fh.fileno())


def save_truncate(f: Path, data: bytes) -> None:
    with f.open("wb") as fh:
        fh.write(data)


def save_rename_over(f: Path, data: bytes, sync: bool = False) -> None:
    tmp = f.with_name(f".{f.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        if sync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, f)


def save_sed(f: Path, data: bytes) -> None:
    # sed -i writes a temp file in the same directory and renames it over f.
    old = f.read_bytes()
    assert b"old" in old
    subprocess.run(["sed", "-i", "s/old/new/", str(f)], check=True)
    assert f.read_bytes() == data


def save_cp(f: Path, data: bytes) -> None:
    other = f.with_name("other.src")
    other.write_bytes(data)
    subprocess.run(["cp", str(other), str(f)], check=True)


PATTERNS: dict[str, Callable[[Path, bytes], None]] = {
    "in-place": save_in_place,
    "truncate-write": save_truncate,
    "rename-over": save_rename_over,
    "sed-i": save_sed,
    "cp": save_cp,
}


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_save_pattern_yields_exact_version(
    daemon: Daemon, files: Path, tmp_path: Path, pattern: str
) -> None:
    f = files / "doc.txt"
    initial = b"the old text, line one\nline two\n"
    f.write_bytes(initial)
    assert daemon.cli("add", str(f)).returncode == 0
    first = version_with(daemon, f, initial)
    assert first["cause"] == "initial"

    saved = (
        initial.replace(b"old", b"new", 1)
        if pattern == "sed-i"
        else b"saved by " + (pattern.encode() * 50)
    )
    PATTERNS[pattern](f, saved)
    v = version_with(daemon, f, saved)
    assert v["cause"] == "close"
    assert v["size"] == len(saved)
    assert restored_bytes(daemon, f, v["id"], tmp_path / "out") == saved
    # The first version is untouched by the new one.
    assert restored_bytes(daemon, f, first["id"], tmp_path / "first") == initial


def test_append_yields_whole_file(daemon: Daemon, files: Path, tmp_path: Path) -> None:
    f = files / "log.txt"
    f.write_bytes(b"line 1\n")
    assert daemon.cli("add", str(f)).returncode == 0
    expected = b"line 1\n"
    for n in range(2, 5):
        with f.open("ab") as fh:
            fh.write(f"line {n}\n".encode())
        expected += f"line {n}\n".encode()
        v = version_with(daemon, f, expected)
        assert restored_bytes(daemon, f, v["id"], tmp_path / f"out{n}") == expected


@pytest.mark.parametrize("paced", [False, True], ids=["burst", "paced"])
def test_rapid_saves_leave_no_torn_versions(
    daemon: Daemon, files: Path, tmp_path: Path, paced: bool
) -> None:
    # A bare burst fits in one coalescing window. Paced, every tenth save waits
    # for its version, so the saves after it race the daemon's follow-up jobs,
    # and the saves are fsynced (as editors do), so the burst spans many windows.
    f = files / "burst.txt"
    initial = b"initial content\n"
    f.write_bytes(initial)
    daemon.client.add(f)
    saved = {initial}
    last = b""
    for n in range(100):
        # Fixed width, so that writing in place without truncating is a whole save.
        last = f"save {n:03d}\n".encode() * (20_000 + 5_000 * (n % 7))
        if n % 2:
            save_rename_over(f, last, paced)
        else:
            save_in_place(f, last, paced)
        saved.add(last)
        if paced and n % 10 == 9:
            version_with(daemon, f, last)
    version_with(daemon, f, last)
    history = daemon.client.history(f)
    assert len(history) >= (11 if paced else 2)
    by_hash = {digest(c): c for c in saved}
    for i, v in enumerate(history):
        assert v["hash"] in by_hash, f"version {v['id']} holds content never saved"
        dest = tmp_path / f"v{i}"
        daemon.client.restore(f, version=v["id"], to=dest)
        assert dest.read_bytes() == by_hash[v["hash"]]
    wait_until(lambda: daemon.client.status(f)["versions"] == len(history), what="the status")
    assert daemon.client.status(f)["last_result"] == "ok"


def chunk_count(state_dir: Path) -> int:
    from filetwin.backends import LocalBackend
    from filetwin.repo import Repository

    return len(stored_chunks(Repository(LocalBackend(state_dir / "repository"))))


def test_identical_save_is_marked_unchanged(daemon: Daemon, files: Path) -> None:
    f = files / "same.bin"
    data = os.urandom(3_000_000)  # several chunks
    f.write_bytes(data)
    daemon.client.add(f)
    before = chunk_count(daemon.state_dir)
    assert before >= 2
    assert daemon.client.history(f)[0]["unchanged"] is False
    save_truncate(f, data)
    wait_until(lambda: len(daemon.client.history(f)) == 2, what="a second version")
    second = daemon.client.history(f)[-1]
    assert second["unchanged"] is True
    assert second["hash"] == digest(data)
    assert chunk_count(daemon.state_dir) == before


def inotify_watch_lines(pid: int) -> int:
    fds = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                fds.append(fd)
        except FileNotFoundError:
            continue
    assert len(fds) == 1, f"expected one inotify fd in the daemon, found {fds}"
    with open(f"/proc/{pid}/fdinfo/{fds[0]}") as fh:
        return sum(1 for line in fh if line.startswith("inotify wd:"))


def test_one_inotify_watch_per_directory(daemon: Daemon, files: Path) -> None:
    """One watch per directory that holds entries, plus one on each entry's inode
    (so that a save through another hard link is seen)."""
    paths = []
    for n in range(20):
        p = files / f"f{n:02d}.txt"
        p.write_text(f"file {n}\n")
        paths.append(p)
    daemon.client.add(*paths)
    assert inotify_watch_lines(daemon.pid) == 1 + 20
    for sub in ("a", "b"):
        d = files / sub
        d.mkdir()
        (d / "x.txt").write_text(sub)
        daemon.client.add(d / "x.txt")
    assert inotify_watch_lines(daemon.pid) == 3 + 22
    # Every entry of the shared directory is still captured.
    paths[7].write_text("changed\n")
    version_with(daemon, paths[7], b"changed\n")
    # Removing the last entry of a directory drops its watch.
    daemon.client.remove(files / "a" / "x.txt")
    assert inotify_watch_lines(daemon.pid) == 2 + 21


def test_missing_file_then_recreated(daemon: Daemon, files: Path) -> None:
    f = files / "gone.txt"
    f.write_text("here\n")
    daemon.client.add(f)
    f.unlink()
    wait_until(lambda: daemon.client.status(f)["state"] == "missing", what="state missing")
    kinds = [e["kind"] for e in daemon.client.events(f)]
    assert "missing" in kinds
    event = next(e for e in daemon.client.events(f) if e["kind"] == "missing")
    assert event["ok"] is False
    assert str(f) in event["message"]

    f.write_text("back again\n")
    version_with(daemon, f, b"back again\n")
    wait_until(lambda: daemon.client.status(f)["state"] == "watching", what="state watching")
    assert "returned" in [e["kind"] for e in daemon.client.events(f)]


def test_missing_file_recreated_by_rename(daemon: Daemon, files: Path) -> None:
    f = files / "moved.txt"
    f.write_text("one\n")
    daemon.client.add(f)
    shutil.move(str(f), str(files / "elsewhere.txt"))
    wait_until(lambda: daemon.client.status(f)["state"] == "missing", what="state missing")
    save_rename_over(f, b"two\n")
    version_with(daemon, f, b"two\n")
    assert daemon.client.status(f)["state"] == "watching"


def test_directory_removed_and_recreated(daemon: Daemon, files: Path) -> None:
    d = files / "sub"
    d.mkdir()
    f = d / "x.txt"
    f.write_text("one\n")
    daemon.client.add(f)
    shutil.rmtree(d)
    wait_until(lambda: daemon.client.status(f)["state"] == "missing", what="state missing")
    d.mkdir()
    f.write_text("two\n")
    version_with(daemon, f, b"two\n")
