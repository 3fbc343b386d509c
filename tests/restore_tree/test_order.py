"""restore_tree's order: every newest manifest is read first, then the entries
are restored largest first (a large file started last would be restored alone,
on one core, at the end)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from filetwin.backends import LocalBackend
from filetwin.repo import Repository
from filetwin.restore_tree import restore_tree


def test_largest_entries_are_restored_first(tmp_path: Path) -> None:
    repo = Repository(LocalBackend(tmp_path / "repo"))
    files = tmp_path / "files"
    files.mkdir()
    sizes = {"small": 10, "large": 300_000, "middle": 20_000, "tiny": 1}
    for name, size in sizes.items():
        p = files / name
        p.write_bytes(name.encode()[:1] * size)
        repo.store_file(p, "initial")
    seen: list[str | None] = []

    def on_done(entry: str | None, result: dict[str, Any] | None) -> None:
        seen.append(entry)

    done = restore_tree(
        repo,
        str(tmp_path / "out"),
        journal_for=lambda entry: contextlib.nullcontext(None),
        workers=1,  # one at a time: completion order is start order
        on_done=on_done,
    )
    order = [Path(r["path"]).name for r in done.restored]
    assert order == sorted(sizes, key=lambda n: -sizes[n])
    assert [Path(e).name for e in seen if e is not None] == order
    for name, size in sizes.items():
        restored = tmp_path / "out" / str(files / name).lstrip("/")
        assert restored.read_bytes() == name.encode()[:1] * size
