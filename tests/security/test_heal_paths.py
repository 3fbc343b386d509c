"""Heal never reads or writes through a symlink swapped in for a parent (as
root, racing), heals every hard link of the file, and keeps holes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from filetwin.errors import FiletwinError, UnsafePath
from tests.faults.conftest import FAST, flip_silently, protect, quarantined
from tests.helpers import Daemon, wait_until
from tests.security.racer import SwapRacer


def test_racer_swapping_the_parent_never_gets_heal_outside(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    daemon = make_daemon("state", **FAST)
    sub = files / "sub"
    sub.mkdir()
    f = sub / "data.bin"
    content = os.urandom(50_000)
    f.write_bytes(content)
    protect(daemon, f, "on-close", "notify")
    # Paused: the race is against heal alone. Each heal's rename is a save,
    # and the backup it starts reads the file through code of its own
    # (capture, repository), which the capture tests race separately.
    daemon.client.pause(f)
    attacker = files.parent / "attacker"
    attacker.mkdir()
    victim = attacker / "data.bin"
    secret = b"root-only secret\n" * 100
    victim.write_bytes(secret)
    victim.chmod(0o600)
    before = os.stat(victim)
    ok = refused = 0
    others: list[str] = []
    rounds = int(os.environ.get("FILETWIN_RACE_ROUNDS", "100"))
    # The real directory, held by a descriptor the racer's renames cannot move:
    # each round damages the file through it, so every heal has work to do
    # (a heal leaves a file that verifies clean alone).
    real = os.open(sub, os.O_RDONLY | os.O_DIRECTORY)
    healed = 0
    with SwapRacer(sub, attacker) as racer:
        for _ in range(rounds):
            damage_at(real, "data.bin")
            try:
                answer = daemon.client.request_recovery(f, reason="racer")
                ok += 1
                healed += bool(answer["healed"])
            except UnsafePath:
                refused += 1
            except FiletwinError as e:
                others.append(str(e))
    print(f"{rounds} rounds: {ok} done, {refused} refused, {racer.swaps} swaps")
    assert racer.swaps > rounds, "the racer did not run"
    assert sorted(os.listdir(attacker)) == ["data.bin"], "heal wrote into the attacker's directory"
    after = os.stat(victim)
    assert (after.st_ino, after.st_mtime_ns, after.st_mode) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_mode,
    )
    assert victim.read_bytes() == secret
    assert not [c for c, _ in quarantined(daemon) if c.read_bytes() == secret], "secret leaked"
    os.close(real)
    assert len(quarantined(daemon)) == healed
    assert others == [], others
    assert healed > 0, (ok, healed, refused)
    # The last round may have been refused: heal once more, with no racer.
    if daemon.client.request_recovery(f, reason="after the race")["healed"] is not None:
        assert f.read_bytes() == content


def damage_at(dfd: int, name: str) -> None:
    """Flip bytes of ``name`` in the directory ``dfd``, keeping its size and mtime
    (silent corruption, which verify tells from an edit)."""
    fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW, dir_fd=dfd)
    try:
        st = os.fstat(fd)
        old = os.pread(fd, 8, 1000)
        os.pwrite(fd, bytes(b ^ 0x5A for b in old), 1000)
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(fd)


def test_heal_writes_every_hard_link(make_daemon: Callable[..., Daemon], files: Path) -> None:
    daemon = make_daemon("state", **FAST)
    f = files / "linked.bin"
    content = os.urandom(100_000)
    f.write_bytes(content)
    protect(daemon, f, "on-close", "notify")
    other = files.parent / "other"
    other.mkdir()
    link = other / "second.bin"
    os.link(f, link)
    ino = f.stat().st_ino
    bad = flip_silently(f)
    assert link.read_bytes() == bad
    result = daemon.client.request_recovery(f, reason="test")
    assert result, result
    assert f.read_bytes() == link.read_bytes() == content
    st = f.stat()
    assert (st.st_ino, st.st_nlink) == (ino, 2)
    [(copy, _)] = quarantined(daemon)
    assert copy.read_bytes() == bad


def test_heal_keeps_holes(make_daemon: Callable[..., Daemon], files: Path) -> None:
    daemon = make_daemon("state", **FAST)
    f = files / "sparse.img"
    size = 64 << 20
    data = os.urandom(1 << 20)
    with f.open("wb") as fh:
        fh.truncate(size)
        fh.seek(size // 2)
        fh.write(data)
    protect(daemon, f, "on-close", "notify")
    flip_silently(f, offset=size // 2 + 10)
    daemon.client.request_recovery(f, reason="test")
    wait_until(lambda: f.stat().st_size == size, what="the healed file")
    assert f.stat().st_blocks * 512 < 2 << 20, f.stat().st_blocks
    with f.open("rb") as fh:
        fh.seek(size // 2)
        assert fh.read(len(data)) == data
