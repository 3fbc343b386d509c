"""The inotify watcher on its own: which events reach which path, one watch per directory."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from inotify_simple import flags as F

from filetwin.capture.watcher import CHANGED, GONE, MODIFIED, Watcher

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
