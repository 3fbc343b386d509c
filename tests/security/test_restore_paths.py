"""restore --to never follows a symlink in its parents, never replaces a special
file, and treats the entry's own file (by inode) as an in-place restore."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import blake3
import pytest

from filetwin.errors import FiletwinError, UnsafePath
from tests.helpers import Daemon, wait_until
from tests.security.racer import SwapRacer

V1 = b"version one\n"
V2 = b"version two, longer\n"


def two_versions(d: Daemon, f: Path) -> str:
    """Protect ``f`` with V1, change it to V2; return V1's id."""
    f.write_bytes(V1)
    assert d.cli("add", str(f)).returncode == 0
    f.write_bytes(V2)
    wait_until(lambda: len(d.client.history(f)) == 2, what="the close version")
    return str(d.client.history(f)[0]["id"])


def causes(d: Daemon, f: Path) -> list[str]:
    return [v["cause"] for v in d.client.history(f)]


def test_planted_symlink_parent_of_destination_is_refused(daemon: Daemon, files: Path) -> None:
    f = files / "doc.txt"
    v1 = two_versions(daemon, f)
    attacker = files.parent / "attacker"
    attacker.mkdir()
    out = files / "out"
    out.symlink_to(attacker)
    r = daemon.cli("restore", str(f), "--version", v1, "--to", str(out / "copy.txt"))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"{out} is a symbolic link" in r.stderr
    assert os.listdir(attacker) == []
    # Deeper: the symlink is a grandparent of the destination.
    (attacker / "sub").mkdir()
    r = daemon.cli("restore", str(f), "--version", v1, "--to", str(out / "sub" / "copy.txt"))
    assert r.returncode == 1 and f"{out} is a symbolic link" in r.stderr
    assert os.listdir(attacker / "sub") == []
    assert f.read_bytes() == V2


def test_racer_swapping_a_parent_never_gets_a_write_outside(daemon: Daemon, files: Path) -> None:
    f = files / "doc.txt"
    v1 = two_versions(daemon, f)
    attacker = files.parent / "attacker"
    attacker.mkdir()
    # Outside the entry's (watched) directory: each swap there would be two
    # inotify events for the daemon, and the test would measure that flood.
    out = files.parent / "dest" / "out"
    out.mkdir(parents=True)
    real_ino = out.stat().st_ino
    ok = refused = 0
    others: list[str] = []
    rounds = int(os.environ.get("FILETWIN_RACE_ROUNDS", "300"))
    with SwapRacer(out, attacker) as racer:
        for i in range(rounds):
            try:
                daemon.client.restore(f, version=v1, to=out / f"copy-{i}.txt")
                ok += 1
            except UnsafePath:
                refused += 1
            except FiletwinError as e:
                others.append(str(e))
    print(f"{rounds} rounds: {ok} done, {refused} refused, {racer.swaps} swaps")
    assert racer.swaps > rounds, "the racer did not run"
    assert os.listdir(attacker) == [], "a restore wrote into the attacker's directory"
    assert others == [], "only UnsafePath may refuse a restore here"
    assert out.stat().st_ino == real_ino
    written = os.listdir(out)
    assert len(written) == ok and ok + refused == rounds
    assert all((out / n).read_bytes() == V1 for n in written)
    assert ok > 0 and refused > 0, (ok, refused)


def _special(kind: str, where: Path) -> socket.socket | None:
    if kind == "fifo":
        os.mkfifo(where)
    elif kind == "chardev":
        os.mknod(where, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    else:
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(where))
        return s
    return None


@pytest.mark.parametrize("kind", ["fifo", "chardev", "socket"])
def test_destination_that_is_a_special_file_is_refused(
    daemon: Daemon, files: Path, kind: str
) -> None:
    f = files / "doc.txt"
    v1 = two_versions(daemon, f)
    dest = files / f"special-{kind}"
    sock = _special(kind, dest)
    try:
        before = os.lstat(dest)
        r = daemon.cli("restore", str(f), "--version", v1, "--to", str(dest))
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "not a regular file" in r.stderr
        after = os.lstat(dest)
        assert (after.st_ino, after.st_mode, after.st_rdev) == (
            before.st_ino,
            before.st_mode,
            before.st_rdev,
        )
        assert not [n for n in os.listdir(files) if "filetwin" in n]
    finally:
        if sock is not None:
            sock.close()


def test_symlink_at_destination_name_is_replaced_not_followed(daemon: Daemon, files: Path) -> None:
    f = files / "doc.txt"
    v1 = two_versions(daemon, f)
    victim = files.parent / "victim.txt"
    victim.write_bytes(b"victim\n")
    dest = files / "copy.txt"
    dest.symlink_to(victim)
    r = daemon.cli("restore", str(f), "--version", v1, "--to", str(dest))
    assert r.returncode == 0, r.stderr
    assert not dest.is_symlink() and dest.read_bytes() == V1
    assert victim.read_bytes() == b"victim\n"


def test_to_naming_the_entry_keeps_the_old_content(daemon: Daemon, files: Path) -> None:
    f = files / "doc.txt"
    v1 = two_versions(daemon, f)
    r = daemon.cli("restore", str(f), "--version", v1, "--to", f"{files}//./doc.txt")
    assert r.returncode == 0, r.stderr
    assert f.read_bytes() == V1
    assert "kept as version" in r.stdout
    kept = [v for v in daemon.client.history(f) if v["cause"] == "restore"]
    assert len(kept) == 1 and kept[0]["size"] == len(V2)


def test_to_naming_another_link_of_the_entry_is_in_place(daemon: Daemon, files: Path) -> None:
    f = files / "doc.txt"
    v1 = two_versions(daemon, f)
    other = files.parent / "elsewhere"
    other.mkdir()
    link = other / "link.txt"
    os.link(f, link)
    ino = f.stat().st_ino
    r = daemon.cli("restore", str(f), "--version", v1, "--to", str(link))
    assert r.returncode == 0, r.stderr
    assert f.read_bytes() == link.read_bytes() == V1
    assert f.stat().st_ino == link.stat().st_ino == ino
    assert "restore" in causes(daemon, f)


def test_racer_against_in_place_restore(daemon: Daemon, files: Path) -> None:
    sub = files / "sub"
    sub.mkdir()
    f = sub / "doc.txt"
    v1 = two_versions(daemon, f)
    daemon.client.update(f, keep=100_000)  # each restore keeps a version: keep v1 too
    daemon.client.pause(f)  # the race is against restore alone (see test_heal_paths)
    attacker = files.parent / "attacker"
    attacker.mkdir()
    secret = b"root-only secret\n"
    (attacker / "doc.txt").write_bytes(secret)
    before = os.stat(attacker / "doc.txt")
    ok = refused = 0
    others: list[str] = []
    rounds = int(os.environ.get("FILETWIN_RACE_ROUNDS", "150"))
    with SwapRacer(sub, attacker) as racer:
        for i in range(rounds):
            try:
                # Alternate, so that every successful restore replaces content.
                daemon.client.restore(f, version=v1 if i % 2 == 0 else None)
                ok += 1
            except UnsafePath:
                refused += 1
            except FiletwinError as e:
                others.append(str(e))
    print(f"{rounds} rounds: {ok} done, {refused} refused, {racer.swaps} swaps")
    assert racer.swaps > rounds, "the racer did not run"
    assert sorted(os.listdir(attacker)) == ["doc.txt"]
    after = os.stat(attacker / "doc.txt")
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert (attacker / "doc.txt").read_bytes() == secret
    assert others == [], others
    assert ok > 0
    hashes = {v["hash"] for v in daemon.client.history(f)}
    assert blake3.blake3(secret).hexdigest() not in hashes, "kept aside through the symlink"
    assert f.read_bytes() in (V1, V2)
