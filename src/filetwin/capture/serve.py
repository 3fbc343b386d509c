"""Running an interceptor: mount it, serve until an unmount signal, unmount.

The FUSE operations themselves are in interceptor.py; this module owns the
mount's life: the checks before it, libfuse's loop, and how a signal ends it
(a lazy detach that lets programs mid-read finish, see ``mount``).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading

from ..client import Client
from ..errors import DaemonUnavailable, NotFound
from .inplace import FSNAME_PREFIX, InPlaceFUSE, allow_other_permitted
from .interceptor import Interceptor
from .srcdir import SourceDir

log = logging.getLogger("filetwin.mount")

#: fuse_main's status when its loop ended with an error, a signal included
FUSE_LOOP_ENDED = 8

#: the signals that unmount an interceptor
UNMOUNT_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def _unmount_on_signal(mountpoint: str) -> None:
    """Wait for an unmount signal, then detach the mount lazily (see ``mount``)."""
    got = signal.sigwait(UNMOUNT_SIGNALS)
    log.info("%s: unmounting (%s)", mountpoint, signal.Signals(got).name)
    tool = shutil.which("fusermount3") or "fusermount3"
    subprocess.run([tool, "-u", "-z", mountpoint], capture_output=True, check=False)


def mount(
    source: str,
    mountpoint: str,
    client: Client,
    faults: list[str] | None = None,
    foreground: bool = True,
    in_place: bool = False,
) -> None:
    """Serve ``source`` at ``mountpoint`` until unmounted (SIGTERM/SIGINT unmount it).

    ``in_place``: ``source`` and ``mountpoint`` are the same directory; it is
    opened before the mount covers it, and entries keep their usual paths."""
    if not os.path.isdir(source):
        raise NotFound(f"{source} is not a directory")
    if not os.path.isdir(mountpoint):
        raise NotFound(f"mount point {mountpoint} is not a directory")
    try:
        client.ping()
    except DaemonUnavailable:
        log.warning("no daemon answers: I/O passes through, nothing is journaled")
    src = SourceDir.open(source)  # before the mount: in place, it is what gets covered
    root = os.path.realpath(mountpoint) if in_place else src.path
    # SIGTERM/SIGINT/SIGHUP are taken by a thread of ours, not libfuse's handler:
    # libfuse would stop serving at once, and a program in the middle of a read
    # (the daemon backing up a file through the mount) would hang the unmount.
    # We detach the mount instead (lazily): new lookups see the directory
    # itself, open files go on being served, and the loop ends when the last
    # one is closed. Blocked here, before any thread starts, so every thread
    # (libfuse's too) inherits the mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, UNMOUNT_SIGNALS)
    threading.Thread(
        target=_unmount_on_signal, args=(os.path.realpath(mountpoint),), daemon=True
    ).start()
    ops = Interceptor(src, client, faults, entry_root=root, in_place=in_place)
    ops.refresh()
    ops.start_refresher()
    ops.start_heal_follower()
    allow_other = allow_other_permitted()
    if not allow_other:
        log.info("not root and no user_allow_other in /etc/fuse.conf: only you see the mount")
    try:
        InPlaceFUSE(
            ops,
            mountpoint,
            foreground=foreground,
            nothreads=False,
            fsname=f"{FSNAME_PREFIX if in_place else 'filetwin:'}{root}",
            default_permissions=True,
            allow_other=allow_other,
            # Files change under the mount (a heal renames a new file over one):
            # no cached size or name may outlive that, or a reader is served the
            # old file's length (the writes made after the heal cut off).
            attr_timeout=0,
            entry_timeout=0,
            negative_timeout=0,
        )
    except RuntimeError as e:
        # libfuse 3 stores the signal that ended its loop (SIGTERM, SIGINT,
        # SIGHUP: the ways to unmount) as the session's error, so fuse_main
        # returns its "loop failed" status for a clean unmount too.
        if e.args != (FUSE_LOOP_ENDED,):
            raise
    finally:
        ops.stop_refresher()
    src.close()
    log.info("%s unmounted", mountpoint)
    if ops.unjournaled:
        log.warning("%d change(s) could not be journaled", ops.unjournaled)
