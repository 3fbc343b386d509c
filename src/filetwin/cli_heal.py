"""`filetwin recover`, `verify` and `mount`: the healing commands."""

from __future__ import annotations

import os
import sys

import click

from .cli_common import ctx_obj, emit_json, handle_errors, json_option, out, state_dir_option
from .errors import UsageError


@click.command()
@state_dir_option
@click.argument("path", type=click.Path())
@json_option
@handle_errors
def recover(path: str, as_json: bool) -> None:
    """Ask the daemon to heal a file now (what an application's notify request does).

    The newest good state is rebuilt beside the file, the damaged file is kept
    in the quarantine, and the rebuilt one takes its place. Refused for an
    entry whose recovery mode is manual: use `filetwin restore` for those.
    """
    result = ctx_obj().client().request_recovery(path, reason="`filetwin recover`")
    if as_json:
        emit_json(result)
        return
    out.print(f"healed {result['path']} from version {result['version']}", markup=False)
    if result["quarantined"]:
        out.print(f"the damaged copy is kept in {result['quarantined']}", markup=False)


@click.command()
@state_dir_option
@click.argument("path", required=False, type=click.Path())
@json_option
@handle_errors
def verify(path: str | None, as_json: bool) -> None:
    """Compare live files with their last version and report corruption.

    A file whose size and mtime are those of its last version but whose
    content differs is silently corrupted; so is one that cannot be read.
    Entries with recovery mode auto are healed; the others are only reported.
    Exit 1 if corruption remains.
    """
    reports = ctx_obj().client().verify(path)
    if as_json:
        emit_json(reports)
    else:
        for r in reports:
            healed = " — healed" if r.get("healed") else ""
            out.print(f"{r['status']:<8} {r['path']}: {r['detail']}{healed}", markup=False)
    if any(r["status"] in ("corrupt", "error") and not r.get("healed") for r in reports):
        sys.exit(1)


@click.command()
@state_dir_option
@click.argument("source", type=click.Path(file_okay=False))
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="close:GLOB",
    help="For tests: closes of files matching GLOB fail with EIO and lose the "
    "writes since their open, as a failing disk would.",
)
@handle_errors
def mount(source: str, mountpoint: str, faults: tuple[str, ...]) -> None:
    """Serve SOURCE at MOUNTPOINT through the interceptor, in the foreground.

    I/O made through MOUNTPOINT on protected files (entries name the real
    file under SOURCE) is seen exactly: on-write entries have every write
    journaled before it reaches SOURCE, every close is recorded, and an I/O
    error on an auto entry is healed and the read or write retried, so the
    application gets correct data. Other files pass straight through.
    SIGTERM or `fusermount3 -u MOUNTPOINT` unmounts it.
    """
    import logging

    from .capture.interceptor import mount as run_mount

    for fault in faults:
        if not fault.startswith("close:"):
            raise UsageError(f"unknown fault {fault!r}; the only kind is close:GLOB")
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s filetwin-mount %(levelname)s %(message)s",
    )
    client = ctx_obj().client()
    client.timeout = 300
    run_mount(os.path.abspath(source), os.path.abspath(mountpoint), client, list(faults))
