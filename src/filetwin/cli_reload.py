"""``filetwin reload``: the daemon re-reads its config's ``[[protect]]`` tables.

What a reload does (daemon/reconcile.py, docs/protect.md): files the config
names are added, config entries whose policy changed are updated, config
entries no longer named are removed with their history kept; entries added
from the command line are never touched. A bad table changes nothing: the
command says which (the config file and its line) and exits 1.
"""

from __future__ import annotations

import sys

import click

from .cli_common import (
    LONG_WAIT,
    ctx_obj,
    emit_json,
    err,
    handle_errors,
    out,
    state_dir_option,
    timeout_option,
)
from .errors import UsageError


@click.command()
@state_dir_option
@timeout_option
@click.option("--json", "as_json", is_flag=True, help="Print what changed as JSON.")
@handle_errors
def reload(as_json: bool) -> None:
    """Re-read the config's [[protect]] tables and apply them (as SIGHUP does).

    The daemon reads the config file it was started with again. Files named
    there and not protected yet are added (first version taken), config
    entries whose policy changed are updated, and config entries no longer
    named stop being protected; their history is kept. A glob is expanded
    now: files that appear later under it are protected at the next reload.
    Entries added with `filetwin add` are never changed or removed by a
    reload. If any [[protect]] table is bad (a relative path, a bad policy
    value) nothing changes, the error names its line and the exit code is 1.

    \b
    Examples:
      filetwin reload
      systemctl reload filetwin        # the unit sends SIGHUP; see journalctl
    """
    client = ctx_obj().client(LONG_WAIT)
    try:
        result = client.reload()
    except UsageError as e:
        # The command was right; the config is not: the operation failed (exit 1).
        err.print(f"filetwin: error: {e.message}; nothing was changed", markup=False)
        sys.exit(1)
    if as_json:
        emit_json(result)
    else:
        out.print(result["message"], markup=False)
        for label in ("added", "updated", "removed"):
            for path in result[label]:
                out.print(f"  {label}: {path}", markup=False)
        for note in result["notes"]:
            out.print(f"  note: {note}", markup=False)
        for failure in result["failures"]:
            err.print(f"  failed: {failure}", markup=False)
    if result["failures"]:
        sys.exit(1)
