"""``filetwin restore --all --to DIR [PATH]``: every entry (under PATH) into a tree.

From this machine's repository, or with ``--from LOCATION`` from a host's copy
in a replica (a new machine after the old one was lost). Works without the
daemon; the entries' journals are replayed (local ones from the state
directory, a replica's from its shipped journal objects).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .cli_common import ctx_obj, emit_json, err, out
from .cli_progress import count_progress, wanted
from .errors import UsageError
from .repo import Repository
from .repo.moments import moment_kind
from .restore_tree import JournalFor, TreeRestore, restore_tree, snapshot_of


def restore_all(
    path: str | None,
    version: str | None,
    at: str | None,
    to: str | None,
    as_json: bool,
    *,
    from_: str | None = None,
    host: str | None = None,
) -> None:
    """The command's work (options checked here: nothing is written on bad input)."""
    if version:
        raise UsageError("--version names a version of one file; with --all give --at TIME")
    if not to:
        raise UsageError("restore --all needs --to DIR (each entry goes to DIR/<its path>)")
    if at is not None and moment_kind(at) == "bare":
        raise UsageError(
            f"--at {at!r} is no time: with --all give TIME (ISO 8601 or Unix seconds), "
            "seq:N or mark:NAME"
        )
    if from_ is not None:
        from .replicas.remote import open_host

        repo = snapshot_of(open_host(from_, host))
        journal_for = _shipped_journals(repo)
    else:
        from .cli import _offline_repo

        repo = snapshot_of(_offline_repo(None)[0])
        journal_for = _local_journals()
    result = _run(repo, path, to, at, journal_for, read_only=from_ is not None, as_json=as_json)
    if as_json:
        emit_json(result)
    else:
        for f in result["failed"]:
            err.print(f"filetwin: {f['path']}: {f['error']}", markup=False)
        source = f" from {from_}" if from_ is not None else ""
        tried = result["files"] + len(result["failed"])
        out.print(
            f"restored {result['files']} of {tried} files "
            f"({result['bytes']} bytes){source} to {result['to']}",
            markup=False,
        )
    if result["failed"]:
        if not as_json:
            err.print(f"filetwin: {len(result['failed'])} file(s) not restored", markup=False)
        sys.exit(1)


def _run(
    repo: Repository,
    under: str | None,
    to: str,
    at: str | None,
    journal_for: JournalFor,
    *,
    read_only: bool,
    as_json: bool,
) -> dict[str, Any]:
    def run(**progress: Any) -> TreeRestore:
        return restore_tree(
            repo, to, under=under, at=at, journal_for=journal_for, read_only=read_only, **progress
        )

    if not wanted(as_json):
        return run().as_json()
    with count_progress() as progress:
        task = progress.add_task(f"restoring to {to}", total=None)

        def total(n: int) -> None:
            progress.update(task, total=n)

        def step(_entry: str | None, _result: dict[str, Any] | None) -> None:
            progress.advance(task)

        return run(on_total=total, on_done=step).as_json()


def _local_journals() -> JournalFor:
    """The journals in this machine's state directory."""
    from .repo.moments import journal_dir

    journals = ctx_obj().config().journals_dir

    def journal_for(entry: str) -> contextlib.AbstractContextManager[Path | None]:
        return contextlib.nullcontext(journal_dir(journals, entry))

    return journal_for


def _shipped_journals(repo: Repository) -> JournalFor:
    """The journal objects a replica copy holds, fetched for each entry's restore."""
    from .replicas.remote import fetched_journal

    @contextlib.contextmanager
    def journal_for(entry: str) -> Iterator[Path | None]:
        with fetched_journal(repo, entry) as (jdir, damaged):
            for problem in damaged:
                err.print(f"filetwin: damaged journal object left out: {problem}", markup=False)
            yield jdir

    return journal_for
