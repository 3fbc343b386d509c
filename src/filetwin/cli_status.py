"""`filetwin status`: the management table, for a person and for a script.

On a terminal a table with a header, the path last and whole (the terminal
wraps a long one; nothing is cut), each entry's last error under it; piped,
plain lines (the same columns, no header) or TSV; ``--json`` as the contract says.
Filters narrow the rows; ``--check`` makes the exit code say whether any
shown entry needs attention, so monitoring can use it.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from typing import Any

import click

from .cli_common import (
    SHORT_WAIT,
    ctx_obj,
    emit_json,
    handle_errors,
    out,
    state_dir_option,
    timeout_option,
)
from .errors import NotFound

STATES = ("watching", "paused", "missing", "error")
FORMATS = ("table", "plain", "tsv", "json")
#: the columns of plain and TSV output, in order (the path is always last)
COLUMNS = ("state", "backup", "recovery", "result", "versions", "last_backup", "job", "path")


def unhealthy(row: dict[str, Any]) -> bool:
    """An entry that needs attention: missing, in error, or whose last job failed."""
    return row["state"] in ("missing", "error") or row["last_result"] in ("failed", "timeout")


def summary(rows: list[dict[str, Any]]) -> str:
    """One line: how many entries, by state and by last result."""
    states = Counter(r["state"] for r in rows)
    results = Counter(r["last_result"] or "none" for r in rows)
    by_state = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    by_result = ", ".join(f"{n} {s}" for s, n in sorted(results.items()))
    noun = "entry" if len(rows) == 1 else "entries"
    attention = sum(1 for r in rows if unhealthy(r))
    line = f"{len(rows)} {noun}: {by_state}; last results: {by_result}"
    return line + (f"; {attention} need attention" if attention else "")


def _fields(r: dict[str, Any]) -> dict[str, str]:
    job = "-"
    if r["job_kind"]:
        job = f"{r['job_kind']}/pid {r['worker_pid'] or '?'}/since {r['job_started_at']}"
    state = r["state"]
    if r["pending_change"] != "none":
        state += f"({r['pending_change']} pending)"
    return {
        "state": state,
        "backup": r["backup_mode"],
        "recovery": r["recovery_mode"],
        "result": r["last_result"] or "-",
        "versions": str(r["versions"]),
        "last_backup": r["last_backup_at"] or "-",
        "job": job,
        "path": r["path"],
    }


def _tsv_cell(text: str) -> str:
    # A tab or newline in a file name must not split a row or a column.
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _print_rows(rows: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "tsv":
        click.echo("\t".join(COLUMNS))
        for r in rows:
            f = _fields(r)
            click.echo("\t".join(_tsv_cell(f[c]) for c in COLUMNS))
        return
    # plain and table: aligned columns, the path last, whole: a long path goes
    # on past the edge and the terminal wraps it, so nothing is ever cut.
    cells = [_fields(r) for r in rows]
    widths = {c: max([len(c)] + [len(f[c]) for f in cells]) for c in COLUMNS[:-1]}
    if fmt == "table":
        out.print("  ".join(c.ljust(widths[c]) for c in COLUMNS[:-1]) + "  path", markup=False)
    for f, r in zip(cells, rows, strict=True):
        head = "  ".join(f[c].ljust(widths[c]) for c in COLUMNS[:-1])
        line = f"{head}  {f['path']}"
        if fmt == "plain":
            click.echo(line)
            continue
        out.print(line, markup=False)
        if r["last_error"]:
            out.print(f"    last error: {r['last_error']}", markup=False)


@click.command()
@state_dir_option
@timeout_option
@click.argument("path", required=False, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON (same as --format json).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="table (the default on a terminal), plain (the default when piped: "
    "aligned columns, the path last), tsv (a header line, then tab-separated rows) or json.",
)
@click.option(
    "--state",
    "states",
    type=click.Choice(STATES),
    multiple=True,
    help="Only entries in this state (repeatable).",
)
@click.option(
    "--failed",
    is_flag=True,
    help="Only entries that need attention: missing, in error, or whose last job failed.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Exit 1 if any entry shown is missing, in error, or its last job failed (for monitoring).",
)
@handle_errors
def status(
    path: str | None,
    as_json: bool,
    fmt: str | None,
    states: tuple[str, ...],
    failed: bool,
    check: bool,
) -> None:
    """Show the management table: each entry's policy and live state.

    PATH names one entry, or a directory: the entries under it. A summary line
    (entries by state and by last result) ends the table and plain outputs.
    """
    client = ctx_obj().client(SHORT_WAIT)
    if path is None:
        rows = client.status()
    else:
        try:
            rows = [client.status(path)]
        except NotFound:
            prefix = os.path.abspath(path).rstrip("/") + "/"
            rows = [r for r in client.status() if r["path"].startswith(prefix)]
            if not rows:
                raise
    if states:
        rows = [r for r in rows if r["state"] in states]
    if failed:
        rows = [r for r in rows if unhealthy(r)]
    fmt = "json" if as_json else fmt or ("table" if sys.stdout.isatty() else "plain")
    if fmt == "json":
        emit_json(rows)
    elif not rows and fmt != "tsv":
        filtered = path is not None or states or failed
        out.print(
            "no entry matches"
            if filtered
            else "no files are protected yet (see `filetwin add --help`)",
            markup=False,
        )
    else:
        _print_rows(rows, fmt)
        if fmt != "tsv":
            out.print(summary(rows), markup=False)
    if check and any(unhealthy(r) for r in rows):
        sys.exit(1)
