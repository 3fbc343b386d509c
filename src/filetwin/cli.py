"""The ``filetwin`` command line (the README and docs/api.md state the contract).

Every command is a thin client of the daemon's API, except that ``history``,
``restore`` and ``events`` fall back to reading the repository and the table
directly when no daemon answers, and ``check`` always does: recovering from
a disaster must not need the daemon.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click

from .cli_common import (
    LONG_WAIT,
    SHORT_WAIT,
    Context,
    F,
    ctx_obj,
    emit_json,
    err,
    handle_errors,
    json_option,
    out,
    state_dir_option,
    timeout_option,
)
from .cli_heal import recover, verify
from .cli_mount import mount
from .cli_offline import entry_candidates, open_existing, repository_location
from .cli_progress import (
    bytes_being_written,
    bytes_progress,
    file_sizes,
    run_polling,
    wanted,
)
from .cli_retention import retention_options
from .cli_service import service
from .cli_status import status
from .client import Client
from .config import Config
from .errors import DaemonUnavailable, FiletwinError, NotFound, UsageError
from .policy import BACKUP_MODES, RECOVERY_MODES, SYNC_MODES


def policy_options(f: F) -> F:
    f = click.option(
        "--sync",
        type=click.Choice(SYNC_MODES),
        default=None,
        help="on-write durability: batch (default; acknowledged records are "
        "durable within 100 ms) or always (each record is fdatasynced "
        "before it is acknowledged).",
    )(f)
    f = retention_options(f)
    f = click.option(
        "--keep",
        type=click.IntRange(1, 100_000),
        default=None,
        help="Versions kept per file (default 50).",
    )(f)
    f = click.option(
        "--timeout",
        type=click.FloatRange(0, 7 * 24 * 3600, min_open=True),
        default=None,
        help="Deadline of one copy in seconds (default: scaled to the file's size, at least 30 s).",
    )(f)
    f = click.option(
        "--retries",
        type=click.IntRange(0, 100),
        default=None,
        help="Times a failed copy is tried again (default 3).",
    )(f)
    f = click.option(
        "--recovery",
        type=click.Choice(RECOVERY_MODES),
        default=None,
        help="When the file is healed: auto (on I/O error or corruption), "
        "manual (you run `filetwin restore`, the default), notify "
        "(an application asks).",
    )(f)
    f = click.option(
        "--backup",
        type=click.Choice(BACKUP_MODES),
        default=None,
        help="When a version is taken: on-close (each close after writing, "
        "the default) or on-write (every write journaled).",
    )(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@state_dir_option
@timeout_option
@click.version_option(package_name="filetwin")
@click.pass_context
def main(ctx: click.Context) -> None:
    """filetwin keeps a twin of every file that matters and heals the file from it.

    \b
    Start the daemon:      filetwin daemon &
    Protect a file:        filetwin add ~/notes.txt
    See its versions:      filetwin history ~/notes.txt
    Bring one back:        filetwin restore ~/notes.txt --version ID
    """
    ctx.ensure_object(Context)
    if ctx.invoked_subcommand not in ("daemon", "mount"):
        # A reader that goes away (`filetwin events | head -1`) ends the command
        # quietly, as it does any Unix tool. Not the daemon nor the interceptor:
        # a client leaving their sockets must not kill them.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)


@main.command()
@state_dir_option
@handle_errors
def daemon() -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT (SIGHUP also stops
    it cleanly: reloading the config on SIGHUP does not exist yet).

    It reads the same config file as every other command (--config,
    $FILETWIN_CONFIG, or the default path). It is ready when `filetwin status`
    answers. Failures are logged to stderr.
    """
    from .daemon.service import run_daemon

    config = ctx_obj().config()
    sys.exit(run_daemon(config))


@main.command()
@state_dir_option
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@policy_options
@json_option
@handle_errors
def add(
    paths: tuple[str, ...],
    backup: str | None,
    recovery: str | None,
    retries: int | None,
    timeout: float | None,
    keep: int | None,
    sync: str | None,
    as_json: bool,
    **retention: int | None,
) -> None:
    """Protect files: register them, take their first version, start watching.

    A symbolic link is resolved and its target is protected. If any path is
    refused (missing, a directory, a device, already protected), nothing is added.
    """
    client = ctx_obj().client(LONG_WAIT)

    def request() -> Mapping[str, Any]:
        result = client.add(
            *paths,
            backup=backup,
            recovery=recovery,
            retries=retries,
            timeout=timeout,
            keep=keep,
            sync=sync,
            **retention,
        )
        return result

    try:
        result = _add_with_progress(client, paths, request) if wanted(as_json) else request()
    except KeyboardInterrupt:
        # The request reached the daemon, which finishes it whatever the client does.
        n = len(paths)
        err.print(
            f"filetwin: interrupted; the daemon still adds the {n} file{'s' if n != 1 else ''} "
            "it was given (all or none: each is registered, gets its first version and is "
            "watched). `filetwin status` shows them; `filetwin remove PATH` undoes it.",
            markup=False,
        )
        sys.exit(130)
    if as_json:
        emit_json(result)
    else:
        for note in result["messages"]:
            out.print(note, markup=False)
        for entry in result["entries"]:
            if entry["path"] not in result.get("reported", ()):
                out.print(_added_line(entry), markup=False)
        for failure in result["failures"]:
            err.print(f"filetwin: error: {failure}", markup=False)
    if result["failures"]:
        sys.exit(1)


def _added_line(entry: Mapping[str, Any]) -> str:
    first = (
        f"first version {entry['last_version']}"
        if entry["last_version"]
        else "no first version yet"
    )
    return f"protecting {entry['path']} ({entry['backup_mode']}, {entry['recovery_mode']}); {first}"


def _add_with_progress(
    client: Client, paths: tuple[str, ...], request: Callable[[], Mapping[str, Any]]
) -> Mapping[str, Any]:
    """Run the add request (all or none, as ever) while a progress bar counts the
    bytes of the first versions taken; each file is reported as its first
    version is stored, read from the daemon's events as they come."""
    sizes = file_sizes(paths)
    poller = Client(socket_path=client.socket_path, timeout=SHORT_WAIT)
    last = poller.events(limit=1)
    after = (last[-1]["id"] or 0) if last else 0
    added: set[str] = set()
    reported: list[str] = []
    with bytes_progress() as progress:
        n = len(paths)
        task = progress.add_task(
            f"adding {n} file{'s' if n != 1 else ''}", total=sum(sizes.values()) or None
        )

        def poll() -> None:
            nonlocal after
            for e in poller.events(after=after):
                after = max(after, e["id"] or after)
                path = e["path"]
                if path is None:
                    continue
                if e["kind"] == "added":
                    added.add(path)
                elif e["kind"] == "backup" and path in added and path not in reported:
                    reported.append(path)
                    progress.console.print(_added_line(poller.status(path)), markup=False)
                    progress.advance(task, sizes.get(path, 0))

        result = run_polling(request, poll)
        progress.update(task, completed=sum(sizes.values()))
    return {**result, "reported": reported}


@main.command()
@state_dir_option
@click.argument("path", type=click.Path())
@policy_options
@json_option
@handle_errors
def update(
    path: str,
    backup: str | None,
    recovery: str | None,
    retries: int | None,
    timeout: float | None,
    keep: int | None,
    sync: str | None,
    as_json: bool,
    **retention: int | None,
) -> None:
    """Change an entry's policy; the change takes effect at once."""
    changes = {
        k: v
        for k, v in dict(
            backup=backup,
            recovery=recovery,
            retries=retries,
            timeout=timeout,
            keep=keep,
            sync=sync,
            **retention,
        ).items()
        if v is not None
    }
    if not changes:
        raise UsageError(
            "nothing to update: give --backup, --recovery, --retries, --timeout, --sync, "
            "--keep or a --keep-within/-hourly/-daily/-weekly/-monthly rule"
        )
    result = ctx_obj().client(SHORT_WAIT).update(path, **changes)
    _print_change(result, as_json)


def _print_change(result: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(result)
    else:
        out.print(result.get("message", "done"), markup=False)


@main.command()
@state_dir_option
@timeout_option
@click.argument("path", type=click.Path())
@json_option
@handle_errors
def pause(path: str, as_json: bool) -> None:
    """Stop watching a file, keeping its entry and history."""
    _print_change(ctx_obj().client(SHORT_WAIT).pause(path), as_json)


@main.command()
@state_dir_option
@timeout_option
@click.argument("path", type=click.Path())
@json_option
@handle_errors
def resume(path: str, as_json: bool) -> None:
    """Watch a paused file again (a version is taken at once)."""
    _print_change(ctx_obj().client(LONG_WAIT).resume(path), as_json)


@main.command()
@state_dir_option
@timeout_option
@click.argument("path", type=click.Path())
@click.option("--purge", is_flag=True, help="Also delete the file's history.")
@json_option
@handle_errors
def remove(path: str, purge: bool, as_json: bool) -> None:
    """Stop protecting a file; its history is kept unless --purge."""
    _print_change(ctx_obj().client(LONG_WAIT).remove(path, purge=purge), as_json)


@main.command()
@state_dir_option
@timeout_option
@click.argument("path", type=click.Path())
@json_option
@handle_errors
def backup(path: str, as_json: bool) -> None:
    """Take a version now; returns when it is stored (with a progress bar of the
    bytes read on a terminal)."""
    client = ctx_obj().client(LONG_WAIT)
    m = _backup_with_progress(client, path) if wanted(as_json) else client.backup(path)
    if as_json:
        emit_json(m)
    else:
        same = " (same content as the previous version)" if m.get("unchanged") else ""
        out.print(
            f"version {m['id']} of {m['path']} stored ({m['size']} bytes){same}", markup=False
        )


def _backup_with_progress(client: Client, path: str) -> Mapping[str, Any]:
    """The backup request, while a bar follows the job's bytes read (the entry's
    ``job_bytes``, which the daemon takes from the worker's I/O counters)."""
    sizes = file_sizes((path,))
    total = next(iter(sizes.values()), None)
    poller = Client(socket_path=client.socket_path, timeout=SHORT_WAIT)
    with bytes_progress() as progress:
        task = progress.add_task(f"backing up {os.path.basename(path)}", total=total or None)

        def poll() -> None:
            done = poller.status(path).get("job_bytes")
            if done is not None:
                progress.update(task, completed=min(done, total) if total else done)

        m = run_polling(lambda: client.backup(path), poll)
        progress.update(task, completed=m["size"], total=m["size"] or None)
    return m


def _offline_repo(path: str | None = None) -> tuple[Any, str | None]:
    """The repository an offline command reads, and the entry name of ``path`` in it.

    The entry's repository is the one its table row records (else the config's);
    a location that holds no repository is an error, never created.
    """
    config = ctx_obj().config()
    names = () if path is None else entry_candidates(path)
    repo = open_existing(repository_location(config, names), config.state_dir)
    if path is None:
        return repo, None
    for name in names:
        if repo.version_names(name):  # names only: a damaged manifest is the restore's to report
            return repo, name
    return repo, names[0]


@main.command()
@state_dir_option
@timeout_option
@click.argument("path", type=click.Path())
@click.option(
    "--journal",
    "with_journal",
    is_flag=True,
    help="With --json: print {versions, journal} instead of the list of versions.",
)
@json_option
@handle_errors
def history(path: str, with_journal: bool, as_json: bool) -> None:
    """List a file's versions, oldest first, and for an on-write file its journal:
    the span of records, every close (failed ones flagged) and mark. Works
    without the daemon."""
    from .daemon.api import manifest_json
    from .repo.journal_summary import journal_summary
    from .repo.moments import journal_dir

    client = ctx_obj().client(SHORT_WAIT)
    journal: Mapping[str, Any] | None = None
    versions: Sequence[Mapping[str, Any]]
    try:
        versions = client.history(path)
        if with_journal or not as_json:
            with contextlib.suppress(NotFound):  # history outlives its entry
                journal = client.journal(path)
    except DaemonUnavailable:
        repo, entry = _offline_repo(path)
        assert entry is not None
        versions = [manifest_json(m.to_json()) for m in repo.versions(entry)]
        if not versions:
            raise NotFound(
                f"{entry} has no history in {repo.backend.location} (no daemon running; "
                "is it protected? see --config and --state-dir)"
            ) from None
        journal = journal_summary(journal_dir(ctx_obj().config().journals_dir, entry))
    if as_json:
        emit_json({"versions": versions, "journal": journal} if with_journal else versions)
        return
    from rich.table import Table as RichTable  # here: ~20 ms to import

    table = RichTable(title=os.path.abspath(path))
    for col in ("id", "time", "size", "cause", "hash", "journal seq"):
        table.add_column(col)
    for v in versions:
        cause = v["cause"] + (" (unchanged)" if v.get("unchanged") else "")
        table.add_row(
            v["id"],
            v["time"],
            str(v["size"]),
            cause,
            v["hash"][:16],
            str(v.get("journal_seq", 0) or "-"),
        )
    out.print(table)
    if journal and journal.get("last_seq") is not None:
        _print_journal(journal)


def _print_journal(j: Mapping[str, Any]) -> None:
    out.print(
        f"journal: records {j['first_seq']}–{j['last_seq']} "
        f"({j['first_time']} – {j['last_time']}), {j['writes']} writes",
        markup=False,
    )
    # Closes and marks in record order, as they happened.
    lines = [(c["seq"], c["time"], "close" if c["ok"] else "close FAILED") for c in j["closes"]]
    lines += [(m["seq"], m["time"], f"mark {m['name']!r}") for m in j["marks"]]
    for seq, when, what in sorted(lines, key=lambda line: line[0]):
        out.print(f"  seq {seq:>8}  {when}  {what}", markup=False)
    if j.get("torn"):
        t = j["torn"]
        out.print(
            f"  the journal ends in a torn record ({t['reason']} at byte {t['offset']} "
            f"of {t['segment']}); replay stops before it",
            markup=False,
        )


@main.command()
@state_dir_option
@timeout_option
@click.argument("path", type=click.Path(), required=False)
@click.option("--version", "version", help="Version id (or a unique prefix of it, 4+ chars).")
@click.option(
    "--at",
    "at",
    help="The moment to rebuild: TIME (ISO 8601 or Unix seconds), "
    "seq:N (a journal record) or mark:NAME. Default: the newest state.",
)
@click.option(
    "--to",
    "to",
    type=click.Path(),
    help="Write here instead of in place (with --all: the directory to restore into).",
)
@click.option(
    "--all",
    "all_",
    is_flag=True,
    help="Restore every entry (those under PATH when given) to DIR/<its path>, "
    "several at a time; needs --to DIR.",
)
@json_option
@handle_errors
def restore(
    path: str | None,
    version: str | None,
    at: str | None,
    to: str | None,
    all_: bool,
    as_json: bool,
) -> None:
    """Rebuild a file as it was (the latest version by default), bit for bit.

    In place, the content being replaced is first kept as a version of cause
    `restore`, so a restore can itself be undone. Works without the daemon.

    With --all, every protected file (or those under the directory PATH) is
    rebuilt into a tree: `filetwin restore --all --to /mnt/new` writes
    /home/me/notes.txt to /mnt/new/home/me/notes.txt. Files that fail are
    named and the rest go on (exit code 1 if any failed).
    """
    if version and at:
        raise UsageError("give either --version or --at, not both")
    if all_:
        from .cli_restore_tree import restore_all

        return restore_all(path, version, at, to, as_json)
    if path is None:
        raise UsageError("name the file to restore (PATH), or give --all --to DIR")
    try:
        try:
            client = ctx_obj().client(LONG_WAIT)

            def request() -> Mapping[str, Any]:
                return client.restore(path, at=at, version=version, to=to)

            result = _restore_with_progress(path, to, request) if wanted(as_json) else request()
        except DaemonUnavailable:
            result = _restore_offline(path, version, at, to)
    except (NotFound, UsageError) as e:
        if (version or at) and "filetwin history" not in e.message:
            # Which versions and moments exist is what `history` lists.
            raise type(e)(f"{e.message} (see `filetwin history {path}`)") from e
        raise
    if as_json:
        emit_json(result)
        return
    moment = f"version {result['version']}"
    if result.get("hash") is None and result.get("journal_seq"):
        moment += f" + journal to seq {result['journal_seq']}"
    label = result.get("moment")
    if label and (label == "latest" or label.startswith("seq ")):
        label = None  # said already
    out.print(
        f"restored {moment} ({label + ', ' if label else ''}"
        f"{result.get('moment_time') or result['version_time']}, "
        f"{result['size']} bytes) to {result['target']}",
        markup=False,
    )
    if result.get("kept_version"):
        out.print(f"the replaced content is kept as version {result['kept_version']}", markup=False)


def _restore_with_progress(
    path: str, to: str | None, request: Callable[[], Mapping[str, Any]]
) -> Mapping[str, Any]:
    """The daemon restores; meanwhile a spinner shows the bytes written so far
    (the size of the temporary file it fills beside the target)."""
    target = os.path.abspath(to if to is not None else path)
    with bytes_progress() as progress:
        task = progress.add_task(f"restoring {target}", total=None)

        def poll() -> None:
            written = bytes_being_written(target)
            if written is not None:
                progress.update(task, completed=written)

        result = run_polling(request, poll)
        progress.update(task, total=result["size"], completed=result["size"])
    return result


def _restore_offline(
    path: str, version: str | None, at: str | None, to: str | None
) -> dict[str, Any]:
    from .repo.moments import journal_dir
    from .restore import restore_version

    config = ctx_obj().config()
    repo, entry = _offline_repo(path)
    assert entry is not None
    try:
        result = restore_version(
            repo,
            entry,
            version=version,
            at=at,
            to=None if to is None else os.path.abspath(to),
            aside_dir=str(config.aside_dir),
            journal_dir=str(journal_dir(config.journals_dir, entry)),
        )
    except FiletwinError as e:
        _offline_event(config, entry, False, f"restore of {entry} failed: {e}")
        raise
    _offline_event(
        config,
        entry,
        True,
        f"restored version {result['version']} of {entry} to {result['target']} "
        "(no daemon running)",
    )
    return result


def _offline_event(config: Config, path: str, ok: bool, message: str) -> None:
    from .table import Table

    if not config.state_dir.is_dir():
        return
    table = Table(config.table_path)
    try:
        table.add_event(path, "restore", ok, message)
    finally:
        table.close()


for _command in (recover, verify, mount, status, service):
    main.add_command(_command)

from .cli_dashboard import dashboard  # noqa: E402, I001 - registered last, in its own module

main.add_command(dashboard)

from .cli_reload import reload  # noqa: E402 - registered in its own module

main.add_command(reload)

from .cli_extras import register  # noqa: E402 - diff, completion, man in their own modules

register(main)

from .cli_events import events  # noqa: E402 - in its own module
from .cli_repo import check, init, key, migrate  # noqa: E402 - the repository's own commands

for _command in (init, key, migrate, check, events):
    main.add_command(_command)

from .cli_replica import register as register_replica  # noqa: E402 - hosts, --from, --replica

register_replica(main)
