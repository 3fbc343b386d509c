"""No acknowledged write is lost by a heal through the interceptor (issue 9, deliver 1).

The case of the issue: a program writes FIRST (acknowledged), then a write
meets EIO on a damaged btrfs block; the file is healed from its last version.
FIRST must still be in the file afterwards. Through a plain mount the failed
write is retried on the healed file and returns; in place it fails with EIO
(the heal waits for the write to end), and FIRST is re-applied all the same.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.faultfs import Btrfs
from tests.faults.conftest import FAST, event, protect, quarantined
from tests.helpers import Daemon, wait_until


@pytest.mark.parametrize("backup", ["on-close", "on-write"])
def test_a_heal_keeps_the_writes_made_before_the_error(
    btrfs: Btrfs,
    make_daemon: Callable[..., Daemon],
    through: Callable[[Daemon, Path], tuple[Path, int]],
    backup: str,
    request: pytest.FixtureRequest,
) -> None:
    in_place = request.node.callspec.params["through"] == "in-place"
    daemon = make_daemon("state", **FAST)
    f = btrfs.mount / "doc.bin"
    content = os.urandom(256 * 1024)
    f.write_bytes(content)
    protect(daemon, f, backup, "auto")
    bad = btrfs.corrupt(f)
    first_at = 0 if bad >= 4096 else 8192
    where, _pid = through(daemon, btrfs.mount)
    with (where / f.name).open("r+b", buffering=0) as fh:
        fh.seek(first_at)
        assert fh.write(b"FIRST") == 5  # acknowledged
        fh.seek(bad + 100)
        if in_place:
            with pytest.raises(OSError) as info:
                fh.write(b"SECOND")
            assert info.value.errno == errno.EIO
        else:
            assert fh.write(b"SECOND") == 6
        fh.seek(first_at)
        # This same open, after the heal: FIRST is there.
        wait_until(lambda: event(daemon, f, "healed"), what="the heal")
        assert fh.read(5) == b"FIRST"
    want = bytearray(content)
    want[first_at : first_at + 5] = b"FIRST"
    if not in_place:
        want[bad + 100 : bad + 106] = b"SECOND"
    assert f.read_bytes() == bytes(want)
    [(_copy, note)] = quarantined(daemon)
    assert note["unreadable"] == [[bad, 4096]]


def test_writes_after_a_heal_reach_the_healed_file(
    btrfs: Btrfs,
    make_daemon: Callable[..., Daemon],
    through: Callable[[Daemon, Path], tuple[Path, int]],
    request: pytest.FixtureRequest,
) -> None:
    """A second handle, open across a heal another handle's read triggered,
    writes into the healed file, not into the damaged one set aside."""
    daemon = make_daemon("state", **FAST)
    f = btrfs.mount / "log.bin"
    content = os.urandom(256 * 1024)
    f.write_bytes(content)
    protect(daemon, f, "on-close", "auto")
    bad = btrfs.corrupt(f)
    where, _pid = through(daemon, btrfs.mount)
    with (where / f.name).open("r+b", buffering=0) as writer:
        writer.seek(len(content))
        assert writer.write(b"line 0\n") == 7
        with (where / f.name).open("rb", buffering=0) as reader:
            reader.seek(bad)
            assert reader.read(4096) == content[bad : bad + 4096]  # healed
        assert writer.write(b"line 1\n") == 7
    assert f.read_bytes() == content + b"line 0\nline 1\n"
