"""check is read-only and runs beside a daemon: a gc that process runs while the
check reads must not be reported as damage (the torture kill campaign found
check naming chunks "missing" in packs a concurrent repack had just replaced).

The other process is a second Repository on the same directory, as the daemon
would be; its gc runs in the middle of the check, at the Nth call the check
makes to its backend (each interleaving of one gc with the check's listings
and reads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from filetwin.backends import LocalBackend
from filetwin.repo import Repository
from filetwin.repo.check import check_repository
from filetwin.repo.gc import collect

from .v2kit import content, store


class GcAtCall(LocalBackend):
    """A LocalBackend that runs ``hook`` once, at its ``at``-th list or get."""

    def __init__(self, root: Path, at: int, hook: Callable[[], None]) -> None:
        super().__init__(root)
        self.at, self.hook, self.calls = at, hook, 0

    def _tick(self) -> None:
        self.calls += 1
        if self.calls == self.at:
            self.hook()

    def list(self, prefix: str = "") -> Iterator[str]:
        self._tick()
        return super().list(prefix)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        self._tick()
        return super().get(name, offset, length)


def _repository_gc_will_change(location: Path, files: Path) -> Repository:
    """Versions whose older ones retention removed: their packs are partly or
    wholly dead, so the next gc deletes and rewrites packs."""
    repo = Repository(LocalBackend(location), pack_size=256 * 1024)
    base = content(1, 600_000)
    for i in range(4):
        # Shared head, new tail: packs end up partly dead once old versions go.
        store(repo, files / "a", base + content(10 + i, 300_000))
        store(repo, files / "b", content(20 + i, 200_000))
    repo.save_index()
    repo.apply_retention(str(files / "a"), 1)
    repo.apply_retention(str(files / "b"), 1)
    return repo


STEPS = 15


@pytest.mark.parametrize("step", range(STEPS))
def test_a_gc_during_check_is_no_damage(tmp_path: Path, step: int) -> None:
    files = tmp_path / "files"
    files.mkdir()
    location = tmp_path / "repo"
    _repository_gc_will_change(location, files)
    # How many calls a check makes here (the packs the store threads made vary
    # a little from run to run); the gc comes at call 1, ..., near the last.
    counting = GcAtCall(location, 0, lambda: None)
    assert check_repository(Repository(counting), read_data=True) == []
    at = 1 + step * counting.calls // STEPS
    done: list[int] = []

    def daemon_gc() -> None:
        result = collect(Repository(LocalBackend(location)))
        done.append(result.packs_deleted)

    checker = Repository(GcAtCall(location, at, daemon_gc))
    problems = check_repository(checker, read_data=True)
    assert problems == [], [p.message for p in problems]
    # the gc ran, within the check, and changed the repository under it
    assert done and done[0] > 0
    # and the repository is healthy after, as a fresh check sees it
    assert check_repository(Repository(LocalBackend(location)), read_data=True) == []
