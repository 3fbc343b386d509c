"""restore_tree's order: entries are restored while their manifests are still
being read, the largest of those read first (a large file started last would
be restored alone, on one core, at the end)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from filetwin.backends import LocalBackend
from filetwin.errors import RepositoryError
from filetwin.repo import Manifest, Repository
from filetwin.restore_tree import restore_tree

SIZES = {"small": 10, "large": 300_000, "middle": 20_000, "tiny": 1, "big": 150_000}


def _repository(tmp_path: Path) -> tuple[Repository, Path]:
    repo = Repository(LocalBackend(tmp_path / "repo"))
    files = tmp_path / "files"
    files.mkdir()
    for name, size in SIZES.items():
        p = files / name
        p.write_bytes(name.encode()[:1] * size)
        repo.store_file(p, "initial")
    return repo, files


def test_the_largest_of_those_read_is_restored_first(tmp_path: Path) -> None:
    repo, files = _repository(tmp_path)
    looked = threading.Semaphore(0)
    newest_of = repo.newest_of

    def counted(names: Any) -> Manifest | None:
        try:
            return newest_of(names)
        finally:
            looked.release()

    repo.newest_of = counted  # type: ignore[method-assign]
    first = [True]

    @contextlib.contextmanager
    def journal_for(entry: str) -> Iterator[None]:
        if first[0]:
            # The first restore (whichever entry was read first) waits for every
            # manifest to be read: the others are then all queued.
            first[0] = False
            for _ in SIZES:
                assert looked.acquire(timeout=30), "the manifests were not all read"
        yield None

    seen: list[str | None] = []
    done = restore_tree(
        repo,
        str(tmp_path / "out"),
        journal_for=journal_for,
        workers=1,  # one at a time: completion order is start order
        on_done=lambda entry, result: seen.append(entry),
    )
    order = [Path(r["path"]).name for r in done.restored]
    assert sorted(order) == sorted(SIZES)
    assert order[1:] == sorted(order[1:], key=lambda n: -SIZES[n])
    assert [Path(e).name for e in seen if e is not None] == order
    for name, size in SIZES.items():
        restored = tmp_path / "out" / str(files / name).lstrip("/")
        assert restored.read_bytes() == name.encode()[:1] * size


def test_a_failing_read_of_a_manifest_fails_that_entry_only(tmp_path: Path) -> None:
    repo, _ = _repository(tmp_path)
    newest_of = repo.newest_of
    calls = [0]

    def flaky(names: Any) -> Manifest | None:
        calls[0] += 1
        if calls[0] == 2:
            raise RepositoryError("the store failed this one read")
        return newest_of(names)

    repo.newest_of = flaky  # type: ignore[method-assign]
    done = restore_tree(
        repo, str(tmp_path / "out"), journal_for=lambda e: contextlib.nullcontext(None)
    )
    assert len(done.restored) == len(SIZES) - 1
    [failed] = done.failed
    assert failed["type"] == "RepositoryError" and failed["path"].startswith("<entry of ")


def test_a_bug_in_a_restorer_is_raised_not_hung(tmp_path: Path) -> None:
    repo, _ = _repository(tmp_path)

    def broken(entry: str) -> contextlib.AbstractContextManager[None]:
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError, match="a bug"):
        restore_tree(repo, str(tmp_path / "out"), journal_for=broken, workers=2)
