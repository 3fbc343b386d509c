"""Replica commands: ``hosts``, ``--from``/``--host`` on ``history`` and ``restore``,
``check --replica NAME`` (see docs/replicas.md).

``--from LOCATION`` reads a host's copy in a replica location (``s3://...`` or
a directory) with no state directory and no daemon: on a new machine after the
old one is lost. ``--host`` picks the host (default: this machine's name when
it has a copy there, else the only host there); ``--endpoint`` names an S3
endpoint (else ``AWS_ENDPOINT_URL_S3`` and the usual AWS environment).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from .cli_common import ctx_obj, emit_json, err, handle_errors, json_option, out
from .errors import NotFound, UsageError

_SOURCE_PARAMS = ("from_", "host", "endpoint")


def _source_options() -> list[click.Option]:
    return [
        click.Option(
            ["--from", "from_"],
            metavar="LOCATION",
            help="Read a replica (s3://BUCKET/PREFIX or a directory) instead of this "
            "machine's repository: no state directory or daemon needed.",
        ),
        click.Option(
            ["--host"],
            metavar="NAME",
            help="With --from: whose copy (default: this machine's, else the only one; "
            "`filetwin hosts --from LOCATION` lists them).",
        ),
        click.Option(
            ["--endpoint"],
            metavar="URL",
            help="With --from s3://...: the S3 endpoint (default: $AWS_ENDPOINT_URL_S3).",
        ),
    ]


def _with_source(cmd: click.Command, run: Callable[..., None]) -> None:
    """Give ``cmd`` the --from/--host/--endpoint options; with --from, ``run`` answers."""
    original = cmd.callback
    assert original is not None
    cmd.params.extend(_source_options())

    @functools.wraps(original)
    def callback(**kwargs: Any) -> Any:
        from_, host, endpoint = (kwargs.pop(k) for k in _SOURCE_PARAMS)
        if from_ is None:
            if host is not None or endpoint is not None:
                return handle_errors(_refuse)(f"--host and --endpoint go with --from ({cmd.name})")
            return original(**kwargs)
        return handle_errors(run)(from_, host, endpoint, **kwargs)

    cmd.callback = callback


def _refuse(message: str) -> None:
    raise UsageError(message)


def _history(
    from_: str, host: str | None, endpoint: str | None, path: str, with_journal: bool, as_json: bool
) -> None:
    from .cli import _print_journal
    from .replicas.remote import history_from, use_endpoint

    use_endpoint(endpoint)
    found = history_from(from_, host, path)
    for problem in found["damaged"]:
        err.print(f"filetwin: damaged journal object left out: {problem}", markup=False)
    if as_json:
        emit_json(
            {"versions": found["versions"], "journal": found["journal"]}
            if with_journal
            else found["versions"]
        )
        return
    from rich.table import Table as RichTable

    table = RichTable(title=f"{found['entry']} (from {from_})")
    for col in ("id", "time", "size", "cause", "hash", "journal seq"):
        table.add_column(col)
    for v in found["versions"]:
        cause = v["cause"] + (" (unchanged)" if v.get("unchanged") else "")
        table.add_row(
            v["id"], v["time"], str(v["size"]), cause, v["hash"][:16],
            str(v.get("journal_seq", 0) or "-"),
        )  # fmt: skip
    out.print(table)
    if found["journal"] and found["journal"].get("last_seq") is not None:
        _print_journal(found["journal"])


def _restore(
    from_: str,
    host: str | None,
    endpoint: str | None,
    path: str | None,
    version: str | None,
    at: str | None,
    to: str | None,
    all_: bool,
    as_json: bool,
) -> None:
    from .replicas.remote import restore_from, use_endpoint

    if version and at:
        raise UsageError("give either --version or --at, not both")
    if all_:
        from .cli_restore_tree import restore_all

        use_endpoint(endpoint)
        return restore_all(path, version, at, to, as_json, from_=from_, host=host)
    if path is None:
        raise UsageError("name the file to restore (PATH), or give --all --to DIR")
    if not to:
        raise UsageError("a restore --from a replica needs --to DEST (the replica is read only)")
    use_endpoint(endpoint)
    try:
        result = restore_from(from_, host, path, to=to, version=version, at=at)
    except NotFound as e:
        hint = f"`filetwin history {path} --from {from_}`"
        raise NotFound(f"{e.message} (see {hint})") from e
    if as_json:
        emit_json(result)
        return
    moment = f"version {result['version']}"
    if result.get("hash") is None and result.get("journal_seq"):
        moment += f" + journal to seq {result['journal_seq']}"
    out.print(
        f"restored {moment} ({result.get('moment') or 'latest'}, "
        f"{result.get('moment_time') or result['version_time']}, {result['size']} bytes) "
        f"to {result['target']} from {from_}",
        markup=False,
    )


@click.command()
@click.option("--from", "from_", required=True, metavar="LOCATION", help="The replica location.")
@click.option("--endpoint", metavar="URL", help="S3 endpoint (default: $AWS_ENDPOINT_URL_S3).")
@json_option
@handle_errors
def hosts(from_: str, endpoint: str | None, as_json: bool) -> None:
    """List the hosts that keep a copy in a replica location.

    Each host writes under hosts/NAME/ (its name is $FILETWIN_HOST, else its
    hostname); pick one with --host in history and restore --from."""
    from .replicas.layout import this_host
    from .replicas.remote import list_hosts, use_endpoint

    use_endpoint(endpoint)
    names = list_hosts(from_)
    if as_json:
        emit_json([{"host": h, "this": h == this_host()} for h in names])
        return
    if not names:
        raise NotFound(f"no host has a copy in {from_}")
    mine = this_host()
    for h in names:
        out.print(h + ("  (this machine)" if h == mine else ""), markup=False)


def _check_replica(replica: str | None, run: Callable[..., Any], **kwargs: Any) -> Any:
    if replica is None:
        return run(**kwargs)
    from .cli_offline import open_existing, repository_location
    from .replicas.check import check_replica
    from .replicas.layout import host_location, this_host

    as_json = kwargs.get("as_json", False)
    config = ctx_obj().config()
    chosen = [r for r in config.replicas if replica in (r.name, r.location)]
    if not chosen:
        known = ", ".join(r.name or r.location for r in config.replicas) or "none configured"
        raise UsageError(f"no replica named {replica!r} in the config (replicas: {known})")
    settings = chosen[0]
    from .backends import open_backend

    primary = open_existing(repository_location(config), config.state_dir)
    backend = open_backend(
        host_location(settings.location, this_host()),
        endpoint_url=settings.endpoint or None,
        region=settings.region or None,
    )
    problems = check_replica(primary, backend, config.journals_dir)
    if as_json:
        emit_json({"ok": not problems, "problems": [p.__dict__ for p in problems]})
    else:
        for p in problems:
            err.print(f"{p.kind}: {p.message}", markup=False)
        if not problems:
            out.print(f"replica {replica} ({backend.location}) holds everything", markup=False)
        else:
            err.print(f"filetwin: {len(problems)} problem(s) found on the replica", markup=False)
    if problems:
        sys.exit(1)
    return None


def _with_replica_check(cmd: click.Command) -> None:
    original = cmd.callback
    assert original is not None
    cmd.params.append(
        click.Option(
            ["--replica"],
            metavar="NAME",
            help="Check what the replica NAME (a [[replica]] of the config) lacks or holds "
            "damaged, compared with the repository, instead of the repository itself.",
        )
    )

    @functools.wraps(original)
    def callback(**kwargs: Any) -> Any:
        replica = kwargs.pop("replica")
        return handle_errors(_check_replica)(replica, original, **kwargs)

    cmd.callback = callback


def register(main: click.Group) -> None:
    """Add ``hosts`` and the replica options of history, restore and check."""
    main.add_command(hosts)
    _with_source(main.commands["history"], _history)
    _with_source(main.commands["restore"], _restore)
    _with_replica_check(main.commands["check"])
