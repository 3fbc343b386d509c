"""``filetwin init``, ``filetwin key`` and ``filetwin migrate``: the repository itself.

All three work on the repository the configuration names (``repository``,
default STATE_DIR/repository) with no daemon needed; ``migrate`` must not run
while a daemon uses the repository (it refuses when one answers).
"""

from __future__ import annotations

import getpass
import sys
from typing import Any

import click

from .cli_common import ctx_obj, emit_json, err, handle_errors, json_option, out, state_dir_option
from .cli_progress import count_progress, wanted
from .config import ENCRYPTION_MODES
from .errors import DaemonUnavailable, UsageError
from .repo.crypto import PASSWORD_ENV, PASSWORD_FILE_ENV, passphrase_from_env

NEW_PASSWORD_ENV = "FILETWIN_NEW_PASSWORD"


def _ask_twice() -> bytes:
    first = getpass.getpass("new passphrase: ")
    if first != getpass.getpass("new passphrase again: "):
        raise UsageError("the two passphrases differ; nothing was changed")
    return first.encode()


def _new_passphrase() -> bytes:
    """The passphrase of a new repository: $FILETWIN_NEW_PASSWORD, else
    $FILETWIN_PASSWORD(_FILE) (what the daemon will read), else asked twice on
    the terminal."""
    import os

    value = os.environ.get(NEW_PASSWORD_ENV)
    if value:
        return value.encode()
    return passphrase_from_env(_ask_twice if sys.stdin.isatty() else None)


def _changed_passphrase() -> bytes:
    """The passphrase `key` sets: $FILETWIN_NEW_PASSWORD, else asked twice on the
    terminal. Never $FILETWIN_PASSWORD: that is the current one."""
    import os

    value = os.environ.get(NEW_PASSWORD_ENV)
    if value:
        return value.encode()
    if not sys.stdin.isatty():
        raise UsageError(
            f"give the new passphrase in ${NEW_PASSWORD_ENV} or run on a terminal to be "
            "asked; nothing was changed"
        )
    return _ask_twice()


@click.command()
@state_dir_option
@click.option(
    "--encryption",
    type=click.Choice(ENCRYPTION_MODES),
    default=None,
    help="none; repokey (keys wrapped by a passphrase, kept in the repository); "
    "keyfile (keys in a 0600 file in the state directory, or $FILETWIN_KEY_FILE). "
    "Default: the config's `encryption` setting.",
)
@json_option
@handle_errors
def init(encryption: str | None, as_json: bool) -> None:
    """Create the repository, encrypted or not.

    The passphrase of a repokey repository comes from $FILETWIN_PASSWORD,
    $FILETWIN_PASSWORD_FILE, or is asked twice. Losing it (or the key file)
    loses every version: keep a copy somewhere safe. The daemon does the same
    at its first start when no repository exists yet (with the config's
    `encryption` setting and the passphrase from the environment).
    """
    from .backends import open_backend
    from .cli_offline import repository_location
    from .repo import format as fmt

    config = ctx_obj().config()
    mode = encryption or config.encryption
    location = repository_location(config)
    config.ensure_state_dir()
    info, _keys = fmt.create(
        open_backend(location),
        mode,
        passphrase=_new_passphrase,
        key_file_for=lambda rid: fmt.default_key_file(config.state_dir, rid),
    )
    fmt.remember(config.state_dir, location, info)
    result: dict[str, Any] = {"location": location, "id": info.id, "encryption": mode}
    if mode == "keyfile":
        result["key_file"] = str(fmt.default_key_file(config.state_dir, info.id))
    if as_json:
        emit_json(result)
        return
    out.print(f"created repository {location} (encryption: {mode})", markup=False)
    if mode == "repokey":
        out.print(
            "the passphrase opens it: without it every version is lost; the daemon reads "
            f"it from ${PASSWORD_ENV} or ${PASSWORD_FILE_ENV}",
            markup=False,
        )
    elif mode == "keyfile":
        out.print(
            f"its key is {result['key_file']}: copy it somewhere safe now; without it "
            "every version is lost (a new host names it with $FILETWIN_KEY_FILE)",
            markup=False,
        )


@click.command()
@state_dir_option
@json_option
@handle_errors
def key(as_json: bool) -> None:
    """Change the passphrase of a repokey repository (no data is rewritten).

    The current passphrase comes from $FILETWIN_PASSWORD, $FILETWIN_PASSWORD_FILE
    or a prompt; the new one from $FILETWIN_NEW_PASSWORD or a prompt (twice).
    A wrong current passphrase changes nothing (exit 1). A running daemon keeps
    working: it holds the keys, which do not change.
    """
    from .backends import open_backend
    from .cli_offline import open_existing, prompted_passphrase, repository_location
    from .repo import format as fmt

    config = ctx_obj().config()
    location = repository_location(config)
    asked: list[bytes] = []

    def current() -> bytes:  # asked once, used to open and to rewrap
        if not asked:
            asked.append(prompted_passphrase())
        return asked[0]

    # No repository, a swapped one or a wrong passphrase: a clear error, nothing made.
    open_existing(location, config.state_dir, passphrase=current)

    def new() -> bytes:
        value = _changed_passphrase()
        if value == current():
            raise UsageError("the new passphrase is the current one; nothing was changed")
        return value

    fmt.change_passphrase(open_backend(location), current, new)
    if as_json:
        emit_json({"location": location, "changed": True})
    else:
        out.print(f"passphrase of {location} changed", markup=False)


@click.command()
@state_dir_option
@json_option
@handle_errors
def migrate(as_json: bool) -> None:
    """Move a repository written before pack files to the current format.

    Every loose chunk is moved into pack files and indexed, then the loose
    objects are deleted; versions keep their ids and restore as before. Safe to
    interrupt and run again. Refuses while a daemon answers (stop it first).
    """
    from .cli_offline import open_existing, repository_location
    from .repo import format as fmt
    from .repo.gc import collect

    obj = ctx_obj()
    config = obj.config()
    try:
        obj.client(2.0).ping()
    except DaemonUnavailable:
        pass
    else:
        raise UsageError("a daemon is running on this state directory: stop it, then migrate")
    location = repository_location(config)
    repo = open_existing(location, config.state_dir)
    info = fmt.read_info(repo.backend)
    assert info is not None
    before = {m.id: m.hash for path in repo.entries() for m in repo.versions(path)}
    result = collect(repo)
    if info.version == 1:
        fmt.write_info(repo.backend, fmt.RepoInfo(fmt.FORMAT_VERSION, fmt.new_id(), "none"))
    after = {m.id: m.hash for path in repo.entries() for m in repo.versions(path)}
    if after != before:  # cannot happen: collect deletes no manifest
        err.print("filetwin: versions changed during migration", markup=False)
        sys.exit(1)
    summary = {
        "location": location,
        "from_version": info.version,
        "versions": len(after),
        "chunks_moved": result.loose_moved,
        "packs_written": result.packs_written,
        "damaged": result.damaged,
    }
    if as_json:
        emit_json(summary)
    else:
        out.print(
            f"repository {location}: format {info.version} -> {fmt.FORMAT_VERSION}, "
            f"{result.loose_moved} chunks moved into {result.packs_written} packs, "
            f"{len(after)} versions intact",
            markup=False,
        )
        for name in result.damaged:
            err.print(f"damaged, left in place: {name}", markup=False)
    if result.damaged:
        sys.exit(1)


def recorded_versions(config: Any, location: str) -> dict[str, str]:
    """The newest version id the state directory's table recorded for each entry
    stored at ``location`` (``check``'s ``expected``: a version missing from the
    repository was deleted or rolled back behind our back). Read-only; {} when
    there is no table."""
    import sqlite3

    if not config.table_path.is_file():
        return {}
    try:
        db = sqlite3.connect(f"file:{config.table_path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return {}
    db.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
    try:
        rows = db.execute(
            "SELECT path, last_version FROM entries WHERE repository = ? "
            "AND last_version IS NOT NULL",
            (location,),
        ).fetchall()
    except sqlite3.Error:
        return {}
    finally:
        db.close()
    return {path: vid for path, vid in rows if vid}


@click.command()
@state_dir_option
@click.option("--read-data", is_flag=True, help="Also read every chunk and check its hash.")
@json_option
@handle_errors
def check(read_data: bool, as_json: bool) -> None:
    """Verify the repository: every version's chunks exist (and, with --read-data,
    decompress to their hash). Exit 1 if anything is wrong. Needs no daemon."""
    from .cli import _offline_repo
    from .cli_offline import repository_location
    from .repo.check import check_repository

    repo, _ = _offline_repo()
    config = ctx_obj().config()
    expected = recorded_versions(config, repository_location(config))
    if read_data and wanted(as_json):
        with count_progress() as progress:
            task = progress.add_task("checking objects", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            problems = check_repository(
                repo, read_data=True, progress=advance, expected=expected
            )
    else:
        problems = check_repository(repo, read_data=read_data, expected=expected)
    if as_json:
        emit_json({"ok": not problems, "problems": [p.__dict__ for p in problems]})
    else:
        for p in problems:
            err.print(f"{p.kind}: {p.message}", markup=False)
        if not problems:
            out.print(
                f"repository {repo.backend.location} is healthy"
                + (" (all data read)" if read_data else ""),
                markup=False,
            )
    if problems:
        if not as_json:
            err.print(f"filetwin: {len(problems)} problem(s) found", markup=False)
        sys.exit(1)
