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
from collections.abc import Mapping, Sequence
from typing import Any

import click
import msgspec

from . import status_rows
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
COLUMNS = (
    "state",
    "backup",
    "recovery",
    "source",
    "result",
    "versions",
    "last_backup",
    "job",
    "path",
)
#: rows the table format shows unless --all or --limit says otherwise
TABLE_ROWS = 50


def unhealthy(row: Mapping[str, Any]) -> bool:
    """An entry that needs attention: missing, in error, or whose last job failed."""
    return status_rows.unhealthy(row["state"], row["last_result"])


def summary_line(counts: Mapping[str, Any]) -> str:
    """One line: how many entries, by state and by last result (GET /status/summary)."""
    total = counts["total"]
    by_state = ", ".join(f"{n} {s}" for s, n in sorted(counts["states"].items()))
    by_result = ", ".join(f"{n} {s}" for s, n in sorted(counts["results"].items()))
    noun = "entry" if total == 1 else "entries"
    line = f"{total} {noun}: {by_state}; last results: {by_result}"
    return line + (f"; {counts['attention']} need attention" if counts["attention"] else "")


def summary(rows: Sequence[Mapping[str, Any]]) -> str:
    """``summary_line`` of rows the client holds."""
    return summary_line(
        {
            "total": len(rows),
            "states": Counter(r["state"] for r in rows),
            "results": Counter(r["last_result"] or "none" for r in rows),
            "attention": sum(1 for r in rows if unhealthy(r)),
        }
    )


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f}"


def _fields(r: Mapping[str, Any]) -> dict[str, str]:
    job = "-"
    if r["job_kind"]:
        job = f"{r['job_kind']}/pid {r['worker_pid'] or '?'}/since {r['job_started_at']}"
        done = r.get("job_bytes")
        if done is not None:
            size = r.get("size")
            # the size of the last version: the total only when the file did not grow
            of = f"/{_mib(size)}" if size and size >= done else ""
            job += f"/{_mib(done)}{of} MiB"
    state = r["state"]
    if r["pending_change"] != "none":
        state += f"({r['pending_change']} pending)"
    return {
        "state": state,
        "backup": r["backup_mode"],
        "recovery": r["recovery_mode"],
        "source": r.get("source") or "cli",
        "result": r["last_result"] or "-",
        "versions": str(r["versions"]),
        "last_backup": r["last_backup_at"] or "-",
        "job": job,
        "path": r["path"],
    }


def replicas_line(replicas: Sequence[Mapping[str, Any]]) -> str:
    """One line of an entry's replicas (docs/replicas.md): each one's name, whether
    it trails (the age of the oldest change it lacks), the newest version and
    journal record it holds."""
    parts = []
    for rep in replicas:
        lag = rep["lag_s"]
        state = "caught up" if not lag else f"{lag:.1f} s behind"
        held = [f"version {rep['version'][:8]}" if rep["version"] else "no version"]
        if rep["journal_seq"]:
            held.append(f"record {rep['journal_seq']}")
        parts.append(f"{rep['name']} {state} ({', '.join(held)})")
    return "; ".join(parts)


def _tsv_cell(text: str) -> str:
    # A tab or newline in a file name must not split a row or a column.
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _print_rows(rows: Sequence[Mapping[str, Any]], fmt: str) -> None:
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
        if r.get("replicas"):
            out.print(f"    replicas: {replicas_line(r['replicas'])}", markup=False)


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
    "--source",
    type=click.Choice(status_rows.SOURCES),
    default=None,
    help="Only entries named in the config's [[protect]] tables (config) or added by hand (cli).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help=f"Show at most N rows (the table format shows {TABLE_ROWS} unless told otherwise).",
)
@click.option("--all", "show_all", is_flag=True, help="Show every row, however many.")
@click.option(
    "--check",
    is_flag=True,
    help="Exit 1 if any entry matching is missing, in error, or its last job failed "
    "(for monitoring).",
)
@handle_errors
def status(
    path: str | None,
    as_json: bool,
    fmt: str | None,
    states: tuple[str, ...],
    failed: bool,
    source: str | None,
    limit: int | None,
    show_all: bool,
    check: bool,
) -> None:
    """Show the management table: each entry's policy and live state.

    PATH narrows it to one entry, or to the entries under a directory.
    --state, --failed and --source filter the rows (on the daemon: fast for
    100,000 entries). On a terminal the table shows the first 50 rows in
    path order and says how many more there are (--all shows every one,
    --limit N that many); plain and TSV output (the default when piped) and
    --json print every matching row unless --limit is given. A summary line
    (every matching entry, by state and by last result) ends the table and
    plain outputs. SOURCE says who named the entry: config (a [[protect]]
    table, see `filetwin reload --help`) or cli (`filetwin add`).

    \b
    Examples:
      filetwin status                      # the first 50 rows and the summary
      filetwin status --failed --all       # every entry that needs attention
      filetwin status /srv/app --json      # the entries under /srv/app, for jq
    """
    client = ctx_obj().client(SHORT_WAIT)
    fmt = "json" if as_json else fmt or ("table" if sys.stdout.isatty() else "plain")
    filters: dict[str, Any] = {
        "state": ",".join(states) or None,
        "failed": failed,
        "source": source,
    }
    if path is not None:
        try:
            entry = client.status(path)
        except NotFound:
            filters["prefix"] = os.path.abspath(path)
            entry = None
        if entry is not None:
            _show_one(entry, fmt, filters, check)
            return
    if limit is None and fmt == "table" and not show_all:
        limit = TABLE_ROWS
    if show_all:
        limit = None
    raw, total = client.status_page(**filters, limit=limit)
    counts = client.status_summary(**filters) if fmt != "json" or check else None
    if total == 0 and path is not None:
        raise NotFound(f"{path} is not protected and no entry is under it (see `filetwin status`)")
    if fmt == "json":
        if sys.stdout.isatty():
            emit_json(msgspec.json.decode(raw))
        else:
            # The daemon's JSON as it came: 100,000 rows are never decoded here.
            sys.stdout.buffer.write(raw + b"\n")
            sys.stdout.flush()
    elif total == 0 and fmt != "tsv":
        filtered = path is not None or states or failed or source
        out.print(
            "no entry matches"
            if filtered
            else "no files are protected yet (see `filetwin add --help`)",
            markup=False,
        )
    else:
        rows = msgspec.json.decode(raw)
        _print_rows(rows, fmt)
        if fmt != "tsv":
            if total > len(rows):
                out.print(
                    f"… {total - len(rows)} more (use --all, --limit N or --json)", markup=False
                )
            assert counts is not None
            out.print(summary_line(counts), markup=False)
    if check and counts is not None and counts["attention"]:
        sys.exit(1)


def _show_one(entry: Mapping[str, Any], fmt: str, filters: dict[str, Any], check: bool) -> None:
    """PATH named an entry: that one row, if the filters keep it."""
    rows = [entry]
    if filters["state"]:
        rows = [r for r in rows if r["state"] in filters["state"].split(",")]
    if filters["failed"]:
        rows = [r for r in rows if unhealthy(r)]
    if filters["source"]:
        rows = [r for r in rows if (r.get("source") or "cli") == filters["source"]]
    if fmt == "json":
        emit_json(rows)
    elif not rows and fmt != "tsv":
        out.print("no entry matches", markup=False)
    else:
        _print_rows(rows, fmt)
        if fmt != "tsv":
            out.print(summary(rows), markup=False)
    if check and any(unhealthy(r) for r in rows):
        sys.exit(1)
