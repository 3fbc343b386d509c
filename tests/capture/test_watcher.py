"""The inotify watcher on its own: which events reach which path, one watch per directory."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import blake3
from inotify_simple import flags as F

from filetwin.capture.watcher import CHANGED, GONE, MODIFIED, Watcher
from tests.helpers import Daemon, wait_until

Seen = list[tuple[str, int]]


def run(body: Callable[[Watcher, Seen], Awaitable[None]]) -> None:
    async def main() -> None:
        seen: Seen = []
        w = Watcher(lambda path, mask: seen.append((path, mask)))
        w.start(asyncio.get_running_loop())
        try:
            await body(w, seen)
        finally:
            w.close()

    asyncio.run(main())


async def until(seen: Seen, path: Path, flag: int, timeout: float = 5.0) -> int:
    """Wait (letting the loop's reader run) for an event with ``flag`` on ``path``."""

    async def poll() -> int:
        while True:
            for p, mask in seen:
                if p == str(path) and mask & flag:
                    return mask
            await asyncio.sleep(0.005)

    return await asyncio.wait_for(poll(), timeout)


def test_close_write_rename_and_delete(tmp_path: Path) -> None:
    f = tmp_path / "f.txt"
    other = tmp_path / "other.txt"
    f.write_text("0")

    async def body(w: Watcher, seen: Seen) -> None:
        w.watch(str(f))
        f.write_text("1")
        assert await until(seen, f, F.CLOSE_WRITE) & CHANGED
        assert any(m & F.MODIFY for p, m in seen if p == str(f))
        seen.clear()
        tmp = tmp_path / ".f.tmp"
        tmp.write_text("2")
        os.replace(tmp, f)
        assert await until(seen, f, F.MOVED_TO) & CHANGED & MODIFIED
        seen.clear()
        f.unlink()
        assert await until(seen, f, F.DELETE) & GONE
        other.write_text("x")  # not watched: never reported
        w.drain()
        assert {p for p, _ in seen} == {str(f)}

    run(body)


def test_drain_dispatches_synchronously(tmp_path: Path) -> None:
    f = tmp_path / "f.txt"
    f.write_text("0")

    async def body(w: Watcher, seen: Seen) -> None:
        w.watch(str(f))
        f.write_text("1")
        w.drain()  # no await: events are read and dispatched right now
        assert any(m & F.CLOSE_WRITE for p, m in seen if p == str(f))

    run(body)


def test_one_watch_per_directory_and_unwatch(tmp_path: Path) -> None:
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    d1.mkdir()
    d2.mkdir()
    names = [d1 / f"n{i}" for i in range(5)] + [d2 / "m"]
    for p in names:
        p.write_text("x")

    async def body(w: Watcher, seen: Seen) -> None:
        for p in names:
            w.watch(str(p))
        assert w.directories == 2
        for p in names[:4]:
            w.unwatch(str(p))
        assert w.directories == 2
        names[4].write_text("y")
        await until(seen, names[4], F.CLOSE_WRITE)
        w.unwatch(str(names[4]))
        assert w.directories == 1
        w.unwatch(str(names[4]))  # twice is harmless
        w.unwatch(str(tmp_path / "never" / "watched"))
        seen.clear()
        names[4].write_text("z")
        names[5].write_text("z")
        await until(seen, names[5], F.CLOSE_WRITE)
        assert all(p == str(names[5]) for p, _ in seen)
        # Watching again after the directory watch was dropped works.
        w.watch(str(names[0]))
        assert w.directories == 2
        names[0].write_text("again")
        await until(seen, names[0], F.CLOSE_WRITE)

    run(body)


def test_directory_removed_and_recreated(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    f = d / "f"
    f.write_text("x")

    async def body(w: Watcher, seen: Seen) -> None:
        w.watch(str(f))
        f.unlink()
        d.rmdir()
        await until(seen, f, F.DELETE_SELF)
        await until(seen, f, F.DELETE)
        # The kernel dropped the watch; the watcher forgot the directory.
        for _ in range(100):
            if w.directories == 0:
                break
            await asyncio.sleep(0.005)
        assert w.directories == 0
        d.mkdir()
        w.watch(str(f))
        seen.clear()
        f.write_text("new")
        await until(seen, f, F.CLOSE_WRITE)

    run(body)


def test_writes_through_another_hard_link_are_reported(tmp_path: Path) -> None:
    d, elsewhere = tmp_path / "d", tmp_path / "elsewhere"
    d.mkdir()
    elsewhere.mkdir()
    f = d / "f"
    f.write_text("0")
    link = elsewhere / "link"
    os.link(f, link)

    async def body(w: Watcher, seen: Seen) -> None:
        w.watch(str(f))
        assert w.files == 1
        with link.open("r+") as fh:  # in place through the other name
            fh.write("1")
        assert await until(seen, f, F.CLOSE_WRITE) & CHANGED
        # A new file renamed over the name: the watch moves to it, and writes
        # through the old inode's other link are no longer this entry's.
        tmp = d / ".f.tmp"
        tmp.write_text("2")
        os.replace(tmp, f)
        await until(seen, f, F.MOVED_TO)
        assert w.files == 1
        seen.clear()
        link.write_text("old inode")
        os.link(f, elsewhere / "link2")
        (elsewhere / "link2").write_text("new inode")
        assert await until(seen, f, F.CLOSE_WRITE)
        w.drain()
        assert f.read_text() == "new inode"
        assert len([m for p, m in seen if m & F.CLOSE_WRITE]) == 1
        # Deleted: no inode watch left behind.
        f.unlink()
        await until(seen, f, F.DELETE)
        assert w.files == 0
        w.unwatch(str(f))

    run(body)


def test_symlink_at_the_name_gets_no_inode_watch(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("x")
    f = tmp_path / "f"
    f.symlink_to(target)

    async def body(w: Watcher, seen: Seen) -> None:
        w.watch(str(f))
        assert w.files == 0
        target.write_text("y")
        w.drain()
        assert not seen

    run(body)


def test_ten_thousand_inode_watches_are_cheap(tmp_path: Path) -> None:
    """The cost of watching every entry's inode: 10,000 entries in 100 directories."""
    paths = []
    for i in range(100):
        d = tmp_path / f"d{i}"
        d.mkdir()
        for j in range(100):
            p = d / f"f{j}"
            p.write_bytes(b"x")
            paths.append(str(p))

    async def body(w: Watcher, seen: Seen) -> None:
        t0 = time.perf_counter()
        for p in paths:
            w.watch(p)
        took = time.perf_counter() - t0
        print(f"watching 10,000 entries (100 directories, 10,100 watches): {took:.3f} s")
        assert (w.directories, w.files) == (100, 10_000)
        assert took < 10.0
        t0 = time.perf_counter()
        for p in paths:
            w.unwatch(p)
        print(f"unwatching them: {time.perf_counter() - t0:.3f} s")
        assert (w.directories, w.files) == (0, 0)

    run(body)


def test_daemon_versions_a_save_through_another_link(daemon: Daemon, files: Path) -> None:
    f = files / "doc.txt"
    f.write_bytes(b"first line\n")
    assert daemon.cli("add", str(f)).returncode == 0
    elsewhere = files.parent / "elsewhere"
    elsewhere.mkdir()
    link = elsewhere / "same-inode.txt"
    os.link(f, link)
    with link.open("r+b") as fh:  # an in-place save through the other name
        fh.write(b"SECOND")
    wait_until(lambda: len(daemon.client.history(f)) == 2, what="a version of the save")
    newest = daemon.client.history(f)[-1]
    assert newest["cause"] == "close"
    assert newest["hash"] == blake3.blake3(b"SECONDline\n").hexdigest()
