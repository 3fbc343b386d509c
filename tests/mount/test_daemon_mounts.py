"""In-place mounts through the daemon's API (GET /mounts, POST /mount, /unmount)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from filetwin.errors import UsageError
from tests.helpers import Daemon, wait_until


def test_the_daemon_mounts_in_place_and_gives_the_directory_back(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    if not Path("/dev/fuse").exists() or shutil.which("fusermount3") is None:
        pytest.skip("FUSE is not available")
    daemon = make_daemon("state", timeout_floor_s=10.0)
    c = daemon.client
    empty = files / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="holds no protected file"):
        c.request("POST", "/mount", {"dir": str(empty)})
    assert c.request("GET", "/mounts") == []
    f = files / "notes.txt"
    f.write_text("one\n")
    c.add(f, backup="on-write")
    before = sorted(os.listdir(files))
    answer = c.request("POST", "/mount", {"dir": str(files)})
    assert answer["dir"] == str(files)
    try:
        wait_until(lambda: [m["mounted"] for m in c.request("GET", "/mounts")] == [True],
                   what="the mount in the daemon's list")  # fmt: skip
        with open(f, "a") as fh:  # an unmodified program, on the usual path
            fh.write("two\n")
        wait_until(lambda: c.journal(f)["last_seq"] >= 1, what="the write journaled")
    finally:
        c.request("POST", "/unmount", {"dir": str(files)})
    assert not os.path.ismount(files)
    assert sorted(os.listdir(files)) == before
    assert f.read_text() == "one\ntwo\n"
