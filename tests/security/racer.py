"""A racer thread that keeps exchanging a real directory with a symlink.

``renameat2(RENAME_EXCHANGE)`` swaps the two names atomically, so at every
instant the name is either the real directory or a symlink to the attacker's
directory, never absent: the strongest form of the symlink-swap attack.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

RENAME_EXCHANGE = 2
AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)


def exchange(a: Path, b: Path) -> None:
    """Atomically swap the names ``a`` and ``b``."""
    res = _libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    if res != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(a))


_LOOP = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2])
n = 0
sys.stdout.write("go\\n"); sys.stdout.flush()
try:
    while True:
        if libc.renameat2(-100, a, -100, b, 2) != 0:
            sys.exit(ctypes.get_errno())
        n += 1
except KeyboardInterrupt:
    pass
print(n)
"""


class SwapRacer:
    """Swaps ``name`` (a real directory) with a symlink to ``attacker`` until stopped.

    The swaps run in a process of their own (as root, like an attacker with
    a CPU of their own), so they are not slowed by the test's GIL. ``name``
    is the real directory again when stopped; ``swaps`` counts the exchanges
    done, so a test can assert that the race really ran.
    """

    def __init__(self, name: Path, attacker: Path) -> None:
        self.name = name
        self.link = name.with_name(name.name + ".racer-link")
        self.link.symlink_to(attacker)
        self.swaps = 0
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> SwapRacer:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _LOOP, str(self.name), str(self.link)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        assert self._proc.stdout.readline() == "go\n"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        self._proc.send_signal(signal.SIGINT)
        out, _ = self._proc.communicate(timeout=30)
        assert self._proc.returncode == 0, f"racer failed: errno {self._proc.returncode}"
        self.swaps = int(out.strip())
        if self.name.is_symlink():
            exchange(self.name, self.link)
        self.link.unlink()
