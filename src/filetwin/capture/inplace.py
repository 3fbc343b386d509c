"""What an in-place mount (`filetwin mount --in-place DIR`) needs beyond a plain one.

- ``allow_other`` only where it is permitted: for root, or when
  ``/etc/fuse.conf`` says ``user_allow_other`` (fusermount3 refuses it
  otherwise, and the mount would fail for an ordinary user).
- The daemon's own I/O: with the interceptor over DIR, the daemon reaches the
  protected files through the mount too (backups, heals, restores). Those
  requests are passed straight through — not journaled (the daemon writes
  what the journal already says), not healed (a heal is what is running), and
  uncached (``direct_io``), so a heal's quarantine read never waits on a page
  the application's failed read still holds locked.
- The mount record: ``STATE_DIR/mounts/KEY.json`` says which process serves
  which directory and how to start it again, for the daemon's supervisor
  (daemon/mounts.py), which unmounts or restarts a crashed interceptor.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
import mfusepy  # noqa: E402  (must see FUSE_LIBRARY_NAME first)

FUSE_CONF = "/etc/fuse.conf"
#: the fsname of an in-place mount in /proc/self/mountinfo starts with this
FSNAME_PREFIX = "filetwin-inplace:"
_UTIME_NOW, _UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


def allow_other_permitted(fuse_conf: str = FUSE_CONF) -> bool:
    """True if this process may ask for ``allow_other``: root, or ``user_allow_other``."""
    if os.geteuid() == 0:
        return True
    try:
        text = Path(fuse_conf).read_text()
    except OSError:
        return False
    return any(line.split("#", 1)[0].strip() == "user_allow_other" for line in text.splitlines())


def process_tree_has(pid: int, ancestor: int) -> bool:
    """True if thread or process ``pid`` is ``ancestor`` or one of its descendants.

    FUSE gives the requesting thread's id; /proc resolves a thread id too.
    A process that ends meanwhile is taken as not the daemon's (its request
    then gets the application's treatment, which is the safe side)."""
    if ancestor <= 0:
        return False
    for _ in range(64):
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                fields = dict(line.split(b":", 1) for line in f.read().splitlines() if b":" in line)
        except OSError:
            return False
        tgid, ppid = int(fields[b"Tgid"]), int(fields[b"PPid"])
        if tgid == ancestor:
            return True
        pid = ppid
    return False


def mount_key(directory: str) -> str:
    return hashlib.blake2b(directory.encode(), digest_size=8).hexdigest()


def records_dir(state_dir: Path) -> Path:
    return state_dir / "mounts"


def write_record(state_dir: Path, directory: str, argv: list[str]) -> Path:
    """Record that this process serves ``directory`` in place (atomic replace)."""
    d = records_dir(state_dir)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = d / f"{mount_key(directory)}.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(
        json.dumps(
            {
                "dir": directory,
                "pid": os.getpid(),
                "start_time": start_time(os.getpid()),
                "argv": argv,
                "uid": os.geteuid(),
                "since": time.time(),
            }
        )
    )
    os.replace(tmp, path)
    return path


def remove_record(state_dir: Path, directory: str) -> None:
    """Forget ``directory`` (a clean unmount: nothing to supervise any more)."""
    path = records_dir(state_dir) / f"{mount_key(directory)}.json"
    with contextlib.suppress(OSError):
        record = json.loads(path.read_text())
        if record.get("pid") == os.getpid():
            path.unlink()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (tells a reused pid from ours)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def record_alive(record: dict[str, Any]) -> bool:
    """True if the process named by ``record`` still runs (the same process, not a reuse)."""
    pid = int(record.get("pid", 0))
    return pid > 0 and start_time(pid) == record.get("start_time")


def own_argv() -> list[str]:
    """How to start this interceptor again: the same interpreter, the same arguments."""
    return [sys.executable, "-m", "filetwin", *sys.argv[1:]]


class InPlaceFUSE(mfusepy.FUSE):
    """mfusepy, plus ``direct_io`` on the handles the interceptor asks it for, and
    the open file's handle passed to chmod, chown, truncate and utimens: with
    ``flag_nopath`` those calls on an open file (a heal's fchmod, fchown,
    futimens on its temp file) come with no path, only the handle."""

    def open(self, path: bytes, fip: Any) -> int:
        ret = super().open(path, fip)
        self._uncached(fip)
        return ret

    def create(self, path: bytes, mode: int, fip: Any) -> int:
        ret = super().create(path, mode, fip)
        self._uncached(fip)
        return ret

    def _uncached(self, fip: Any) -> None:
        h = self.operations._handles.get(fip.contents.fh)
        if h is not None and h.raw:
            # Uncached, and without the page cache invalidation of an open, which
            # would wait on the page an application's failing read holds locked.
            fip.contents.direct_io = 1
            fip.contents.keep_cache = 1

    def _args(self, path: bytes | None, fip: Any) -> tuple[str | None, int | None]:
        return (
            None if path is None else path.decode(self.encoding, self.errors),
            fip.contents.fh if fip else None,
        )

    def chmod_fuse_3(self, path: bytes | None, mode: int, fip: Any) -> int:
        return int(self.operations.chmod(*self._args(path, fip), mode=mode))

    def chown_fuse_3(self, path: bytes | None, uid: int, gid: int, fip: Any) -> int:
        # -1 ("leave it") arrives as the unsigned maximum
        uid = -1 if mfusepy.c_uid_t(uid + 1).value == 0 else uid
        gid = -1 if mfusepy.c_gid_t(gid + 1).value == 0 else gid
        return int(self.operations.chown(*self._args(path, fip), uid=uid, gid=gid))

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
        p, fh = self._args(path, fip)
        return int(self.operations.truncate(p, length, fh))

    def utimens_fuse_3(self, path: bytes | None, buf: Any, fip: Any) -> int:
        p, fh = self._args(path, fip)
        times = None
        if buf:
            # UTIME_NOW and UTIME_OMIT (touch -a, touch -m) resolved here:
            # os.utime takes plain times only.
            now, old = time.time_ns(), None
            ns = []
            for key, t in (("st_atime", buf.contents.actime), ("st_mtime", buf.contents.modtime)):
                if t.tv_nsec == _UTIME_NOW:
                    ns.append(now)
                elif t.tv_nsec == _UTIME_OMIT:
                    old = old or self.operations.getattr(p, fh)
                    ns.append(int(old[key]))
                else:
                    ns.append(t.tv_sec * 10**9 + t.tv_nsec)
            times = (ns[0], ns[1])
        return int(self.operations.utimens(p, fh, times=times))
