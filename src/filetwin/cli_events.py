"""``filetwin events``: the event log, from the daemon or, without one, the table."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import click

from .cli_common import (
    SHORT_WAIT,
    ctx_obj,
    emit_json,
    handle_errors,
    json_option,
    out,
    state_dir_option,
    timeout_option,
)
from .errors import DaemonUnavailable


@click.command()
@state_dir_option
@timeout_option
@click.argument("path", required=False, type=click.Path())
@click.option("--follow", "-f", is_flag=True, help="Keep printing events as they happen.")
@click.option("--limit", "-n", type=click.IntRange(1), default=None, help="Only the last N.")
@json_option
@handle_errors
def events(path: str | None, follow: bool, limit: int | None, as_json: bool) -> None:
    """The event log: backups, retries, timeouts, missing files, restores."""
    client = ctx_obj().client(SHORT_WAIT)

    def show(e: Mapping[str, Any]) -> None:
        if as_json and follow:
            click.echo(json.dumps(e))
        elif not as_json:
            mark = "ok " if e["ok"] else "ERR"
            out.print(f"{e['time']} {mark} {e['kind']:<14} {e['message']}", markup=False)

    if follow:
        try:
            for event in client.follow_events(path, limit=limit or 10):
                show(event)
        except KeyboardInterrupt:
            return
        return
    items: Sequence[Mapping[str, Any]]
    try:
        items = client.events(path, limit=limit)
    except DaemonUnavailable:
        items = _events_offline(path, limit)
    if as_json:
        emit_json(items)
    else:
        for e in items:
            show(e)


def _events_offline(path: str | None, limit: int | None) -> list[dict[str, Any]]:
    from .table import Table, as_json

    config = ctx_obj().config()
    if not config.table_path.exists():
        return []
    table = Table(config.table_path)
    try:
        return [
            as_json(e)
            for e in table.events(None if path is None else os.path.abspath(path), 0, limit)
        ]
    finally:
        table.close()
