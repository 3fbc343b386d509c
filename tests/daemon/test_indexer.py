"""The daemon names its workers' packs in index objects, so that nothing that
opens the repository later has to read every pack whole to find its chunks.

Before: a worker wrote an index object only after putting 64 packs itself, so
a daemon stopped after an add of 201 files left 8 packs and no index object,
and a restore from S3 on a new host downloaded all 8 packs (128 MiB) to learn
what they held, then again to restore.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from filetwin.backends import LocalBackend, open_backend
from filetwin.daemon.gate import Gate
from filetwin.daemon.indexer import Indexer
from filetwin.repo.chunkstore import ChunkStore
from filetwin.repo.crypto import Keys
from filetwin.repo.packs import INDEX, list_packs, read_index
from filetwin.repo.repository import Repository
from tests.helpers import CountingBackend, Daemon


def test_a_stopped_daemon_leaves_every_pack_indexed(daemon: Daemon, files: Path) -> None:
    paths = []
    for i in range(5):
        p = files / f"f{i}.txt"
        p.write_bytes(f"file {i}\n".encode() * (i + 1) * 1000)
        paths.append(p)
    daemon.client.add(*paths)
    big = files / "big.bin"
    big.write_bytes(bytes(range(256)) * 20000)
    daemon.client.add(big)
    daemon.stop()
    repo_dir = daemon.state_dir / "repository"
    backend = CountingBackend(repo_dir)
    packs = set(list_packs(backend))
    assert packs
    keys = Keys.none()
    indexed = {
        loc.pack for name in backend.list(INDEX) for loc in read_index(backend, keys, name).values()
    }
    assert packs <= indexed, f"packs left unindexed: {sorted(packs - indexed)}"
    # So a fresh reader finds every chunk without reading a pack.
    backend.gets.clear()
    repo = Repository(backend)
    repo.chunks.load()
    assert not [g for g in backend.gets if g.startswith("packs/")]
    for p in [*paths, big]:
        assert b"".join(repo.read_version(repo.latest(str(p)))) == p.read_bytes()  # type: ignore[arg-type]


def _worker_news(
    root: Path, n: int, tag: str
) -> list[tuple[str, list[tuple[str, int, int, int]]]]:
    """``n`` packs put by another view of the repository (a worker), as its news."""
    worker = ChunkStore(LocalBackend(root), Keys.none(), index_every=1000)
    for i in range(n):
        w = worker.writer()
        data = f"chunk {tag} {i}".encode() * 100
        w.add(Keys.none().chunk_id(data), data)
        w.flush()
        worker.record(w.written)
    return worker.take_news()


def test_waiting_packs_are_indexed_after_a_while_or_once_many(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    location = "the-location"

    async def scenario() -> None:
        tasks: set[asyncio.Task[None]] = set()

        def start(coro: Coroutine[Any, Any, None]) -> None:
            task = asyncio.get_running_loop().create_task(coro)
            tasks.add(task)

        daemon_view = ChunkStore(LocalBackend(root), Keys.none())
        indexer = Indexer(daemon_view, location, Gate(), start, age_s=0.05, every=3)
        backend = open_backend(root)
        # Two packs: fewer than `every`, indexed once age_s has passed.
        indexer.heard({location: _worker_news(root, 2, "a"), "another": []})
        assert list(backend.list(INDEX)) == []
        for _ in range(400):
            if list(backend.list(INDEX)):
                break
            await asyncio.sleep(0.01)  # the event loop's own clock runs the timer
        [first] = list(backend.list(INDEX))
        assert len({loc.pack for loc in read_index(backend, Keys.none(), first).values()}) == 2
        # Three more: `every` reached, indexed at once (no timer involved).
        indexer.age_s = 3600
        indexer.heard({location: _worker_news(root, 3, "b")})
        await asyncio.gather(*tasks)
        names = set(backend.list(INDEX)) - {first}
        assert len(names) == 1
        assert set(list_packs(backend)) == {
            loc.pack
            for name in backend.list(INDEX)
            for loc in read_index(backend, Keys.none(), name).values()
        }
        indexer.heard({"another": _worker_news(tmp_path / "other", 5, "c")})
        assert daemon_view.unindexed() == 0, "news of another location is not this one's"

    asyncio.run(scenario())
