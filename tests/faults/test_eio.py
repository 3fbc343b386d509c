"""Real EIO: a data block of a protected file is damaged in a btrfs loop image.

btrfs then fails reads of that block with EIO (its data checksum no longer
matches). An ``auto`` entry is healed whoever meets the error: a reader
through the interceptor, ``filetwin.open``, ``filetwin verify``, a backup.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import filetwin
from bench.faultfs import BLOCK, Btrfs
from tests.faults.conftest import (
    FAST,
    digest,
    event,
    follows,
    history_hashes,
    kinds,
    protect,
    quarantined,
)
from tests.helpers import Daemon, wait_until

MODES = ["on-close", "on-write"]
SIZE = 256 * 1024


def damaged_file(btrfs: Btrfs, daemon: Daemon, backup: str, recovery: str) -> tuple[Path, bytes]:
    f = btrfs.mount / "data.bin"
    content = os.urandom(SIZE)
    f.write_bytes(content)
    protect(daemon, f, backup, recovery)
    return f, content


def assert_healed(daemon: Daemon, f: Path, content: bytes, bad: int) -> None:
    """The file reads back whole; its damaged copy and the event say where it went.

    ``bad`` is the offset of the damaged 4 KiB block: the copy lists it as the
    only unreadable part and holds zeros there, everything else salvaged.
    """
    assert f.read_bytes() == content
    healed = wait_until(lambda: event(daemon, f, "healed"), what="the healed event")
    [(copy, note)] = quarantined(daemon)
    assert str(copy) in healed["message"]
    assert note["path"] == str(f)
    assert note["size"] == len(content)
    assert note["unreadable"] == [[bad, BLOCK]], note
    assert copy.read_bytes() == content[:bad] + bytes(BLOCK) + content[bad + BLOCK :]
    # Nothing but the good content was ever stored.
    assert history_hashes(daemon, f) == {digest(content)}


@pytest.mark.parametrize("backup", MODES)
def test_reader_through_the_interceptor_gets_the_original_bytes(
    btrfs: Btrfs,
    make_daemon: Callable[..., Daemon],
    mounted: Callable[..., Path],
    backup: str,
) -> None:
    daemon = make_daemon("state", **FAST)
    f, content = damaged_file(btrfs, daemon, backup, "auto")
    mnt = mounted(daemon, btrfs.mount)
    bad = btrfs.corrupt(f)
    assert (mnt / f.name).read_bytes() == content
    assert_healed(daemon, f, content, bad)
    assert "through the interceptor" in event(daemon, f, "healed")["message"]  # type: ignore[index]


@pytest.mark.parametrize("backup", MODES)
def test_filetwin_open_heals_and_retries_the_read(
    btrfs: Btrfs, make_daemon: Callable[..., Daemon], backup: str
) -> None:
    daemon = make_daemon("state", **FAST)
    f, content = damaged_file(btrfs, daemon, backup, "auto")
    bad = btrfs.corrupt(f)
    with filetwin.open(f, "rb", client=daemon.client) as fh:
        assert fh.read() == content
    assert_healed(daemon, f, content, bad)


@pytest.mark.parametrize("backup", MODES)
def test_verify_heals_an_auto_entry(
    btrfs: Btrfs, make_daemon: Callable[..., Daemon], backup: str
) -> None:
    daemon = make_daemon("state", **FAST)
    f, content = damaged_file(btrfs, daemon, backup, "auto")
    bad = btrfs.corrupt(f)
    r = daemon.cli("verify", str(f), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    [report] = json.loads(r.stdout)
    assert report["status"] == "corrupt"
    assert report["healed"] is True
    assert "EIO" in report["detail"]
    assert_healed(daemon, f, content, bad)
    assert follows(kinds(daemon, f), "corrupt", "healed")
    again = daemon.cli("verify", str(f), "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)[0]["status"] == "ok"


@pytest.mark.parametrize("backup", MODES)
def test_verify_reports_a_manual_entry_and_leaves_it(
    btrfs: Btrfs, make_daemon: Callable[..., Daemon], backup: str
) -> None:
    daemon = make_daemon("state", **FAST)
    f, _content = damaged_file(btrfs, daemon, backup, "manual")
    btrfs.corrupt(f)
    r = daemon.cli("verify", str(f))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "corrupt" in r.stdout
    assert "healed" not in r.stdout
    with pytest.raises(OSError) as info:
        f.read_bytes()
    assert info.value.errno == errno.EIO
    assert quarantined(daemon) == []
    seen = kinds(daemon, f)
    assert "corrupt" in seen
    assert "healed" not in seen


def test_backup_read_error_is_never_stored_and_heals(
    btrfs: Btrfs, make_daemon: Callable[..., Daemon]
) -> None:
    daemon = make_daemon("state", **FAST)
    f, content = damaged_file(btrfs, daemon, "on-close", "auto")
    bad = btrfs.corrupt(f)
    later = time.time_ns() + 5_000_000_000
    os.utime(f, ns=(later, later))  # a new mtime, no content write
    r = daemon.cli("backup", str(f))
    if r.returncode == 0:  # healed before the copy, which then read good bytes
        assert f.read_bytes() == content
    wait_until(lambda: follows(kinds(daemon, f), "read-error", "healed"), what="read-error, healed")
    assert_healed(daemon, f, content, bad)
    wait_until(lambda: daemon.client.status(f)["job_kind"] is None, what="the jobs to end")
    assert history_hashes(daemon, f) == {digest(content)}


def test_scrub_finds_and_heals_damage_no_one_read(
    btrfs: Btrfs, make_daemon: Callable[..., Daemon]
) -> None:
    daemon = make_daemon("state", scrub_interval_s=0.3, **FAST)
    f, content = damaged_file(btrfs, daemon, "on-close", "auto")
    bad = btrfs.corrupt(f)  # no event tells the daemon: only its scrub can find it
    wait_until(lambda: follows(kinds(daemon, f), "corrupt", "healed"), what="the scrub to heal")
    assert_healed(daemon, f, content, bad)
    scrubs = [e for e in daemon.client.events() if e["kind"] == "scrub"]
    assert any(not e["ok"] and "1 corrupt" in e["message"] for e in scrubs), scrubs
