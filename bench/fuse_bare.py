"""A bare passthrough on the same FUSE library as the interceptor, with no
filetwin logic: the baseline the interceptor is measured against.

``python -m bench.fuse_bare SOURCE MOUNTPOINT``
"""

from __future__ import annotations

import os
import sys
from typing import Any

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
import mfusepy  # noqa: E402

STAT_KEYS = (
    "st_atime",
    "st_ctime",
    "st_gid",
    "st_mode",
    "st_mtime",
    "st_nlink",
    "st_size",
    "st_uid",
    "st_ino",
    "st_blocks",
    "st_blksize",
    "st_rdev",
)


class Bare(mfusepy.Operations):
    use_ns = True

    def __init__(self, source: str) -> None:
        self.source = source

    def _r(self, path: str) -> str:
        return os.path.join(self.source, path.lstrip("/"))

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        st = os.fstat(fh) if fh is not None else os.lstat(self._r(path))
        attrs = {k: getattr(st, k) for k in STAT_KEYS}
        for k in ("st_atime", "st_mtime", "st_ctime"):
            attrs[k] = getattr(st, k + "_ns")
        return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._r(path))]

    def open(self, path: str, flags: int) -> int:
        return os.open(self._r(path), flags)

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        return os.open(self._r(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        return os.pwrite(fh, data, offset)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._r(path), length)
        return 0

    def release(self, path: str, fh: int) -> int:
        os.close(fh)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        os.fsync(fh)
        return 0

    def unlink(self, path: str) -> int:
        os.unlink(self._r(path))
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._r(path), mode)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        os.utime(self._r(path), ns=times) if times else os.utime(self._r(path))
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._r(path), mode)
        return 0

    def rename(self, old: str, new: str) -> int:
        os.rename(self._r(old), self._r(new))
        return 0


if __name__ == "__main__":
    mfusepy.FUSE(
        Bare(os.path.realpath(sys.argv[1])),
        sys.argv[2],
        foreground=True,
        nothreads=False,
        fsname="bare",
        default_permissions=True,
        allow_other=True,
    )
