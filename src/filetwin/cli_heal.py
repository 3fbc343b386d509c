"""`filetwin recover`, `verify` and `mount`: the healing commands."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import click

from .cli_common import (
    LONG_WAIT,
    ctx_obj,
    emit_json,
    handle_errors,
    json_option,
    out,
    state_dir_option,
    timeout_option,
)
from .cli_progress import bytes_progress, wanted
from .client import Client
from .errors import DaemonUnavailable, FiletwinError, NotFound


@click.command()
@state_dir_option
@timeout_option
@click.argument("path", type=click.Path())
@json_option
@handle_errors
def recover(path: str, as_json: bool) -> None:
    """Ask the daemon to heal a file now (what an application's notify request does).

    The newest good state is rebuilt beside the file, the damaged file is kept
    in the quarantine, and the rebuilt one takes its place. A file that reads
    without error is never rolled back: one that matches its newest state, or
    that a program wrote since, is left as it is and the answer says so.
    Refused for an entry whose recovery mode is manual: use `filetwin restore`.
    """
    result = ctx_obj().client(LONG_WAIT).request_recovery(path, reason="`filetwin recover`")
    if as_json:
        emit_json(result)
        return
    if not result.get("healed", True):
        out.print(result["message"], markup=False)
        return
    out.print(f"healed {result['path']} from version {result['version']}", markup=False)
    if result["quarantined"]:
        out.print(f"the damaged copy is kept in {result['quarantined']}", markup=False)


@click.command()
@state_dir_option
@timeout_option
@click.argument("path", required=False, type=click.Path())
@json_option
@handle_errors
def verify(path: str | None, as_json: bool) -> None:
    """Compare live files with their last version and report corruption.

    A file whose size and mtime are those of its last version but whose
    content differs is silently corrupted; so is one that cannot be read.
    Entries with recovery mode auto are healed; the others are only reported.
    A summary line ends the report. Exit 1 if a file is missing or corruption
    (or an error) remains.
    """
    client = ctx_obj().client(LONG_WAIT)
    reports = _verify_with_progress(client, path) if wanted(as_json) else client.verify(path)
    if as_json:
        emit_json(reports)
    else:
        if not wanted():
            for r in reports:
                out.print(_report_line(r), markup=False)
        out.print(verify_summary(reports), markup=False)
    if any(_bad(r) for r in reports):
        sys.exit(1)


def _report_line(r: dict[str, Any]) -> str:
    healed = " — healed" if r.get("healed") else ""
    return f"{r['status']:<8} {r['path']}: {r['detail']}{healed}"


def _verify_with_progress(client: Client, path: str | None) -> list[dict[str, Any]]:
    """Verify entry by entry (the entries ``verify`` of everything covers: all
    but paused ones), each line printed as its entry is done, under a bar
    counting the bytes of the entries verified."""
    if path is not None:
        rows = [client.status(path)]
    else:
        rows = [r for r in client.status() if r["state"] != "paused"]
    reports: list[dict[str, Any]] = []
    with bytes_progress() as progress:
        n = len(rows)
        task = progress.add_task(
            f"verifying {n} file{'s' if n != 1 else ''}",
            total=sum(r.get("size") or 0 for r in rows) or None,
        )
        for row in rows:
            try:
                got = client.verify(row["path"])
            except DaemonUnavailable:
                raise
            except NotFound:
                if path is not None:
                    raise
                continue  # removed since the list was read: not ours to verify
            except FiletwinError as e:
                # As the daemon's verify of everything reports an entry it cannot verify.
                got = [
                    {
                        "path": row["path"],
                        "status": "error",
                        "detail": str(e),
                        "healed": False,
                        "recovery_mode": row["recovery_mode"],
                    }
                ]
            for r in got:
                progress.console.print(_report_line(r), markup=False)
            reports.extend(got)
            progress.advance(task, row.get("size") or 0)
    return reports


def _bad(report: dict[str, Any]) -> bool:
    """A file that verify leaves missing, corrupt or unreadable."""
    return report["status"] in ("corrupt", "error", "missing") and not report.get("healed")


def verify_summary(reports: list[dict[str, Any]]) -> str:
    """``verified N files: 3 ok, 1 missing; 1 healed`` (counts by status)."""
    counts = Counter(str(r["status"]) for r in reports)
    by_status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing to verify"
    healed = sum(1 for r in reports if r.get("healed"))
    bad = sum(1 for r in reports if _bad(r))
    line = f"verified {len(reports)} file{'s' if len(reports) != 1 else ''}: {by_status}"
    return (
        line + (f"; {healed} healed" if healed else "") + (f"; {bad} need attention" if bad else "")
    )
