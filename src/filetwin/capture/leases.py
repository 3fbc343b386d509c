"""Whether a file is open for writing right now, asked of the kernel.

A save in place is open(O_TRUNC), write, close; between the open and the
close the file holds a state no program ever meant to keep (empty, or half
written). inotify reports the truncation as IN_MODIFY but cannot say that the
writer still holds the file. A read lease can: the kernel grants one only
while no process has the file open for writing. The lease is released at
once; a writer opening the file in that instant waits a few microseconds.

The kernel signals a lease holder (SIGIO) when a writer breaks its lease;
the daemon ignores SIGIO (``ignore_lease_breaks``) so that this cannot kill it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import stat
from pathlib import Path


def ignore_lease_breaks() -> None:
    """Make SIGIO harmless to this process (call once, from the main thread)."""
    signal.signal(signal.SIGIO, signal.SIG_IGN)


def open_for_writing(path: str) -> bool | None:
    """True if some process has ``path`` open for writing now, False if none has.

    None when the kernel cannot tell: the file is gone, is not a regular file
    (or a symlink stands at the name), lives on a file system without leases
    (FUSE, NFS), or belongs to another user and we lack CAP_LEASE.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except OSError as e:
            if e.errno == errno.EAGAIN:
                return True
            return None
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def on_fuse(path: str) -> bool:
    """Whether ``path`` lives on a FUSE file system (the interceptor's mounts).

    A heal must not rewrite such a file in its inode: the interceptor moves
    the programs' open handles onto a healed file itself, and a truncate
    through the mount can wait on a page the program's failing read holds.
    """
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    real = os.path.realpath(os.path.dirname(path))
    best, fstype = "", ""
    for line in mounts:
        left, _sep, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        point = fields[4].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, right.split()[0]
    return fstype.startswith("fuse")
