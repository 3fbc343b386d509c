"""filetwin.open: a heal never drops a write acknowledged to the application.

The file lives on a btrfs loop image with one data block damaged: a write
into part of that block makes the kernel read it first, and the read fails
with EIO (a real I/O error, not a mock). The entry is ``auto``: the library
asks the daemon to heal, the file is replaced by its last version (on-close)
or its version plus journal (on-write), and the write is retried. Before the
fix, on-close lost "FIRST" (written and acknowledged before the error): it
survived only in the quarantine.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import filetwin
from bench.faultfs import BLOCK, Btrfs
from filetwin import fileobj
from tests.faults.conftest import FAST, digest, history_hashes, kinds, protect, quarantined
from tests.helpers import Daemon, wait_until

MODES = ["on-close", "on-write"]
SIZE = 256 * 1024


def damaged(btrfs: Btrfs, daemon: Daemon, backup: str) -> tuple[Path, bytes, int]:
    """An auto entry whose last version is ``content``; one block of it damaged."""
    f = btrfs.mount / "data.bin"
    content = os.urandom(SIZE)
    f.write_bytes(content)
    protect(daemon, f, backup, "auto")
    bad = btrfs.corrupt(f)
    return f, content, bad


def one_heal(daemon: Daemon, f: Path) -> None:
    """Exactly one heal, one damaged copy kept."""
    wait_until(lambda: "healed" in kinds(daemon, f), what="the healed event")
    assert kinds(daemon, f).count("healed") == 1
    assert len(quarantined(daemon)) == 1


@pytest.mark.parametrize("backup", MODES)
def test_a_write_healed_and_retried_keeps_the_writes_before_it(
    btrfs: Btrfs, make_daemon: Callable[..., Daemon], backup: str
) -> None:
    daemon = make_daemon("state", **FAST)
    f, content, bad = damaged(btrfs, daemon, backup)
    with filetwin.open(f, "r+b", client=daemon.client) as fh:
        assert fh.write(b"FIRST") == 5
        fh.seek(bad + 10)
        # Into the damaged block: EIO, heal, FIRST put back, SECOND retried.
        assert fh.write(b"SECOND") == 6
        assert fh.tell() == bad + 16
        assert fh.write(b"THIRD") == 5  # the file object goes on after the heal
    expected = b"FIRST" + content[5 : bad + 10] + b"SECONDTHIRD" + content[bad + 21 :]
    assert f.read_bytes() == expected
    one_heal(daemon, f)
    # The content the application made is what is stored next (the close's version).
    wait_until(
        lambda: digest(expected) in history_hashes(daemon, f), what="a version of the result"
    )


@pytest.mark.parametrize("backup", MODES)
def test_a_read_healed_and_retried_sees_the_writes_before_it(
    btrfs: Btrfs, make_daemon: Callable[..., Daemon], backup: str
) -> None:
    daemon = make_daemon("state", **FAST)
    f, content, bad = damaged(btrfs, daemon, backup)
    with filetwin.open(f, "r+b", client=daemon.client) as fh:
        fh.write(b"FIRST")
        fh.seek(0)
        # The read meets the damaged block: EIO, heal, FIRST put back, read retried.
        assert fh.read() == b"FIRST" + content[5:]
    assert f.read_bytes() == b"FIRST" + content[5:]
    one_heal(daemon, f)


@pytest.mark.parametrize("backup", MODES)
def test_a_truncate_and_writes_are_put_back_in_order(
    btrfs: Btrfs, make_daemon: Callable[..., Daemon], backup: str
) -> None:
    daemon = make_daemon("state", **FAST)
    f, content, bad = damaged(btrfs, daemon, backup)
    with filetwin.open(f, "r+b", client=daemon.client) as fh:
        fh.write(b"A" * 10)
        fh.truncate(bad + BLOCK + 100)  # cuts the tail: the heal must not bring it back
        fh.seek(0)
        fh.write(b"B" * 4)
        fh.seek(bad + 10)
        assert fh.write(b"SECOND") == 6
    expected = b"BBBBAAAAAA" + content[10 : bad + 10] + b"SECOND" + content[bad + 16 :]
    assert f.read_bytes() == expected[: bad + BLOCK + 100]
    one_heal(daemon, f)


def test_an_overlay_past_its_bound_raises_instead_of_healing(
    btrfs: Btrfs,
    make_daemon: Callable[..., Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the bound the writes since the open cannot all be put back: the
    error reaches the application and no heal replaces the file."""
    monkeypatch.setattr(fileobj, "OVERLAY_LIMIT", 8)
    daemon = make_daemon("state", **FAST)
    f, content, bad = damaged(btrfs, daemon, "on-close")
    fh = filetwin.open(f, "r+b", client=daemon.client)
    fh.write(b"FIRST")
    fh.write(b"MORE")  # 9 bytes kept: past the bound
    fh.seek(bad + 10)
    with pytest.raises(OSError) as raised:
        fh.write(b"SECOND")
    assert raised.value.errno == errno.EIO
    fh.close()
    assert "healed" not in kinds(daemon, f)
    assert quarantined(daemon) == []
    with f.open("rb") as g:
        assert g.read(9) == b"FIRSTMORE"  # the acknowledged writes are still there


@pytest.mark.parametrize("backup", MODES)
def test_appends_are_put_back_where_they_were_made(
    btrfs: Btrfs, make_daemon: Callable[..., Daemon], backup: str
) -> None:
    """An appending file's overlay is put back at the offsets the appends had
    (not appended again), and the file keeps appending after the heal."""
    daemon = make_daemon("state", **FAST)
    f, content, _bad = damaged(btrfs, daemon, backup)
    with filetwin.open(f, "a+b", client=daemon.client) as fh:
        assert fh.write(b"APPENDED") == 8
        fh.seek(0)
        assert fh.read() == content + b"APPENDED"  # EIO, heal, overlay, read retried
        assert fh.write(b"MORE") == 4
    assert f.read_bytes() == content + b"APPENDEDMORE"
    one_heal(daemon, f)
