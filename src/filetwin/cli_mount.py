"""`filetwin mount`: serve a directory through the interceptor, elsewhere or in place."""

from __future__ import annotations

import logging
import os
import sys

import click

from .cli_common import ctx_obj, handle_errors, state_dir_option
from .errors import UsageError


@click.command()
@state_dir_option
@click.argument("source", type=click.Path(file_okay=False))
@click.argument("mountpoint", required=False, type=click.Path(file_okay=False))
@click.option(
    "--in-place",
    is_flag=True,
    help="Mount over SOURCE itself: programs keep their usual paths (no MOUNTPOINT).",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="close:GLOB",
    help="For tests: closes of files matching GLOB fail with EIO and lose the "
    "writes since their open, as a failing disk would.",
)
@handle_errors
def mount(source: str, mountpoint: str | None, in_place: bool, faults: tuple[str, ...]) -> None:
    """Serve SOURCE at MOUNTPOINT through the interceptor, in the foreground;
    with --in-place, serve the directory SOURCE over itself.

    I/O made through the mount on protected files is seen exactly: on-write
    entries have every write journaled, every close is recorded with its
    result (a failed close reaches the program and is an event), and an I/O
    error on an auto entry is healed and the read or write retried, so the
    program gets correct data. Other files pass straight through. Entries
    name the real files (under SOURCE; in place, their usual paths).

    In place, the directory is opened before the mount covers it and reached
    only through that descriptor; the daemon watches the mount and unmounts
    or restarts it if this process dies. SIGTERM or `fusermount3 -u DIR`
    unmounts it and gives the directory back as it was. allow_other (other
    users, the daemon running as root, see the mount) is asked for only as
    root or with user_allow_other in /etc/fuse.conf.
    """
    from .capture import inplace
    from .capture.serve import mount as run_mount

    for fault in faults:
        if not fault.startswith("close:"):
            raise UsageError(f"unknown fault {fault!r}; the only kind is close:GLOB")
    if in_place and mountpoint is not None:
        raise UsageError("--in-place mounts over SOURCE itself: give no MOUNTPOINT")
    if not in_place and mountpoint is None:
        raise UsageError("give a MOUNTPOINT, or --in-place to mount over SOURCE")
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s filetwin-mount %(levelname)s %(message)s",
    )
    obj = ctx_obj()
    client = obj.client()
    client.timeout = 300
    source = os.path.abspath(source)
    if not in_place:
        assert mountpoint is not None
        run_mount(source, os.path.abspath(mountpoint), client, list(faults))
        return
    directory = os.path.realpath(source)
    state_dir = obj.config().state_dir
    # How the daemon's supervisor starts this mount again if this process dies.
    argv = [sys.executable, "-m", "filetwin.cli_mount", "--in-place", directory]
    argv += ["--state-dir", str(state_dir)]
    for fault in faults:
        argv += ["--fault", fault]
    inplace.write_record(state_dir, directory, argv)
    try:
        run_mount(directory, directory, client, list(faults), in_place=True)
    finally:
        inplace.remove_record(state_dir, directory)


if __name__ == "__main__":  # until the lead wires it into cli.py
    mount()
