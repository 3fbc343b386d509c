"""Restore through the CLI: choosing a version, exactness, offline, planted links."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import blake3

from tests.helpers import Daemon, wait_until

KNOWN_MTIME_NS = 1_600_000_000_123_456_789
OWNER = (1234, 5678)


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def history(d: Daemon, f: Path) -> list[dict[str, Any]]:
    r = d.cli("history", str(f), "--json")
    assert r.returncode == 0, r.stderr
    result: list[dict[str, Any]] = json.loads(r.stdout)
    return result


def ts(iso_time: str) -> float:
    return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()


def protected_two_versions(d: Daemon, f: Path) -> list[dict[str, Any]]:
    """``f`` protected with v1 (mode 0640, known mtime and owner), then changed to v2."""
    f.write_bytes(b"version one\n")
    f.chmod(0o640)
    os.chown(f, *OWNER)
    os.utime(f, ns=(KNOWN_MTIME_NS, KNOWN_MTIME_NS))
    r = d.cli("add", str(f))
    assert r.returncode == 0, r.stderr
    f.write_bytes(b"version two, longer\n")
    wait_until(lambda: len(d.client.history(f)) == 2, what="the close version")
    versions = history(d, f)
    assert [v["cause"] for v in versions] == ["initial", "close"]
    return versions


def assert_is_v1(f: Path) -> None:
    st = os.lstat(f)
    assert stat.S_ISREG(st.st_mode)
    assert f.read_bytes() == b"version one\n"
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_mtime_ns == KNOWN_MTIME_NS
    assert (st.st_uid, st.st_gid) == OWNER


def test_restore_by_id_and_prefix_keeps_replaced_content(daemon: Daemon, files: Path) -> None:
    f = files / "doc.txt"
    v1, v2 = protected_two_versions(daemon, f)

    r = daemon.cli("restore", str(f), "--version", v1["id"])
    assert r.returncode == 0, r.stderr
    assert v1["id"] in r.stdout and "kept as version" in r.stdout
    assert_is_v1(f)
    kept = [v for v in history(daemon, f) if v["cause"] == "restore"]
    assert len(kept) == 1 and kept[0]["hash"] == v2["hash"] == b3(b"version two, longer\n")

    # Back to v2 by a short prefix; the v1 content now in place is kept aside too.
    r = daemon.cli("restore", str(f), "--version", v2["id"][:4])
    assert r.returncode == 0, r.stderr
    assert f.read_bytes() == b"version two, longer\n"
    kept = [v for v in history(daemon, f) if v["cause"] == "restore"]
    assert [k["hash"] for k in kept] == [v2["hash"], v1["hash"]]
    events = daemon.client.events(f)
    assert [e["ok"] for e in events if e["kind"] == "restore"] == [True, True]


def test_restore_at_time(daemon: Daemon, files: Path) -> None:
    f = files / "timed.txt"
    v1, v2 = protected_two_versions(daemon, f)
    t1, t2 = ts(v1["time"]), ts(v2["time"])
    assert t2 - t1 > 0.004, "versions too close to pick a time between them"
    mid = (t1 + t2) / 2

    r = daemon.cli("restore", str(f), "--at", f"{mid:.6f}")
    assert r.returncode == 0, r.stderr
    assert_is_v1(f)

    f.write_bytes(b"scribble\n")
    r = daemon.cli("restore", str(f), "--at", datetime.fromtimestamp(mid, UTC).isoformat())
    assert r.returncode == 0, r.stderr
    assert_is_v1(f)
    iso_z = datetime.fromtimestamp(t2 + 0.002, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    r = daemon.cli("restore", str(f), "--at", iso_z, "--to", str(files / "at-v2.txt"))
    assert r.returncode == 0, r.stderr
    assert (files / "at-v2.txt").read_bytes() == b"version two, longer\n"

    r = daemon.cli("restore", str(f), "--at", f"{t1 - 60:.3f}")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "no version of" in r.stderr and "the first is at" in r.stderr
    r = daemon.cli("restore", str(f), "--at", "yesterday-ish")
    assert r.returncode == 2 and "neither ISO 8601" in r.stderr
    assert_is_v1(f)


def test_restore_to_destination_leaves_original(daemon: Daemon, files: Path) -> None:
    f = files / "orig.txt"
    v1, _ = protected_two_versions(daemon, f)
    before = (f.read_bytes(), os.stat(f).st_mtime_ns)
    count = len(history(daemon, f))
    dest = files / "elsewhere" / "copy.txt"
    dest.parent.mkdir()
    r = daemon.cli("restore", str(f), "--version", v1["id"], "--to", str(dest))
    assert r.returncode == 0, r.stderr
    assert str(dest) in r.stdout
    assert_is_v1(dest)
    assert (f.read_bytes(), os.stat(f).st_mtime_ns) == before
    assert len(history(daemon, f)) == count
    assert not [v for v in history(daemon, f) if v["cause"] == "restore"]
    # --to into a directory that does not exist is an error, not a mkdir.
    r = daemon.cli("restore", str(f), "--to", str(files / "nowhere" / "x.txt"))
    assert r.returncode != 0 and "nowhere" in r.stderr


def test_restore_errors(daemon: Daemon, files: Path) -> None:
    f = files / "err.txt"
    v1, _ = protected_two_versions(daemon, f)
    before = f.read_bytes()
    cases = [
        (["--version", v1["id"], "--at", "0"], 2, "either --version or --at"),
        (["--version", "deadbeef"], 1, "no version deadbeef"),
        (["--version", "ab"], 2, "at least 4 hex"),
        (["--version", "zzzzzz"], 2, "at least 4 hex"),
    ]
    for args, code, words in cases:
        r = daemon.cli("restore", str(f), *args)
        assert r.returncode == code, (args, r.stdout, r.stderr)
        assert words in r.stderr, (args, r.stderr)
    never = files / "never.txt"
    r = daemon.cli("restore", str(never))
    assert r.returncode == 1 and str(never) in r.stderr
    assert not never.exists()
    assert f.read_bytes() == before


def test_large_random_file_restores_bit_for_bit(daemon: Daemon, files: Path) -> None:
    f = files / "big.bin"
    first = os.urandom(5 << 20)
    f.write_bytes(first)
    assert daemon.cli("add", str(f)).returncode == 0
    second = bytearray(first)
    second[1 << 20 : (1 << 20) + 4096] = os.urandom(4096)
    second += os.urandom(12345)
    f.write_bytes(second)
    wait_until(lambda: len(daemon.client.history(f)) == 2, what="second version")
    v1, v2 = history(daemon, f)
    assert (v1["hash"], v1["size"]) == (b3(first), len(first))
    assert (v2["hash"], v2["size"]) == (b3(bytes(second)), len(second))

    r = daemon.cli("restore", str(f), "--version", v1["id"])
    assert r.returncode == 0, r.stderr
    assert f.read_bytes() == first
    r = daemon.cli("restore", str(f), "--version", v2["id"], "--to", str(files / "v2.bin"))
    assert r.returncode == 0, r.stderr
    assert (files / "v2.bin").read_bytes() == bytes(second)


def test_restore_and_history_without_daemon(daemon: Daemon, files: Path) -> None:
    f = files / "offline.txt"
    v1, v2 = protected_two_versions(daemon, f)
    assert daemon.stop() == 0
    assert daemon.cli("status").returncode == 3

    assert history(daemon, f) == [v1, v2]
    r = daemon.cli("restore", str(f), "--version", v1["id"][:6])
    assert r.returncode == 0, r.stderr
    assert_is_v1(f)
    versions = history(daemon, f)
    assert versions[:2] == [v1, v2]
    assert [(v["cause"], v["hash"]) for v in versions[2:]] == [("restore", v2["hash"])]

    dest = files / "offline-copy.txt"
    r = daemon.cli("restore", str(f), "--version", v2["id"], "--to", str(dest))
    assert r.returncode == 0, r.stderr
    assert dest.read_bytes() == b"version two, longer\n"
    r = daemon.cli("restore", str(f), "--version", "deadbeef")
    assert r.returncode == 1 and "no version deadbeef" in r.stderr

    r = daemon.cli("events", str(f), "--json")
    assert r.returncode == 0, r.stderr
    restores = [e for e in json.loads(r.stdout) if e["kind"] == "restore"]
    assert [e["ok"] for e in restores] == [True, True, False]
    assert "no daemon running" in restores[0]["message"]
    assert v1["id"] in restores[0]["message"]


def test_restore_replaces_planted_symlink_without_following(daemon: Daemon, files: Path) -> None:
    f = files / "target.txt"
    v1, _ = protected_two_versions(daemon, f)
    victim = files.parent / "victim.txt"
    victim.write_bytes(b"victim content\n")
    victim_st = os.stat(victim)
    f.unlink()
    f.symlink_to(victim)

    r = daemon.cli("restore", str(f), "--version", v1["id"])
    assert r.returncode == 0, r.stderr
    assert not f.is_symlink()
    assert_is_v1(f)
    assert victim.read_bytes() == b"victim content\n"
    st = os.stat(victim)
    assert (st.st_mode, st.st_uid, st.st_mtime_ns) == (
        victim_st.st_mode,
        victim_st.st_uid,
        victim_st.st_mtime_ns,
    )
    assert not [v for v in history(daemon, f) if v["hash"] == b3(b"victim content\n")]


def test_restore_refuses_symlinked_parent(daemon: Daemon, files: Path) -> None:
    sub = files / "sub"
    sub.mkdir()
    f = sub / "data.txt"
    v1, _ = protected_two_versions(daemon, f)
    victim_dir = files.parent / "victim-dir"
    victim_dir.mkdir()
    victim = victim_dir / "data.txt"
    victim.write_bytes(b"victim content\n")
    sub.rename(files / "sub.moved")
    sub.symlink_to(victim_dir)

    for extra in ([], ["--version", v1["id"]]):
        r = daemon.cli("restore", str(f), *extra)
        assert r.returncode != 0, (r.stdout, r.stderr)
        assert f"{sub} is a symbolic link" in r.stderr
    assert victim.read_bytes() == b"victim content\n"
    assert sorted(os.listdir(victim_dir)) == ["data.txt"]
    assert (files / "sub.moved" / "data.txt").read_bytes() == b"version two, longer\n"
    failed = [e for e in daemon.client.events(f) if e["kind"] == "restore"]
    assert failed and not any(e["ok"] for e in failed)

    # Offline restore refuses the same way.
    daemon.stop()
    r = daemon.cli("restore", str(f), "--version", v1["id"])
    assert r.returncode != 0 and f"{sub} is a symbolic link" in r.stderr
    assert victim.read_bytes() == b"victim content\n"


def test_status_counts_the_version_kept_by_restore(daemon: Daemon, files: Path) -> None:
    f = files / "count.txt"
    v1, _ = protected_two_versions(daemon, f)
    r = daemon.cli("restore", str(f), "--version", v1["id"])
    assert r.returncode == 0, r.stderr
    # The kept version is the newest; the restored content is no new version.
    assert daemon.client.history(f)[-1]["cause"] == "restore"
    wait_until(lambda: daemon.client.status(f)["job_kind"] is None, what="idle entry")
    assert daemon.client.status(f)["versions"] == len(daemon.client.history(f)) == 3


def test_in_place_restore_keeps_hard_links(daemon: Daemon, files: Path) -> None:
    f = files / "linked.txt"
    v1, v2 = protected_two_versions(daemon, f)
    other = files.parent / "other-dir"
    other.mkdir()
    link = other / "second-name.txt"
    os.link(f, link)
    ino = os.stat(f).st_ino
    r = daemon.cli("restore", str(f), "--version", v1["id"])
    assert r.returncode == 0, r.stderr
    assert_is_v1(f)
    assert link.read_bytes() == b"version one\n"
    st = os.stat(f)
    assert (st.st_ino, st.st_nlink) == (ino, 2) and os.stat(link).st_ino == ino
    kept = [v for v in history(daemon, f) if v["cause"] == "restore"]
    assert [k["hash"] for k in kept] == [v2["hash"]]
    assert not [n for n in os.listdir(files) if "filetwin" in n]


def test_sparse_file_restores_sparse(daemon: Daemon, files: Path) -> None:
    f = files / "sparse.img"
    size, data_at = 100 << 20, 50 << 20
    data = os.urandom(1 << 20)
    with f.open("wb") as fh:
        fh.truncate(size)
        fh.seek(data_at)
        fh.write(data)
    assert os.stat(f).st_blocks * 512 < 2 << 20, "the file system made no hole"
    assert daemon.cli("add", str(f)).returncode == 0
    v1 = history(daemon, f)[0]
    with f.open("r+b") as fh:  # a second version, written in place
        fh.seek(10 << 20)
        fh.write(b"x" * 4096)
    wait_until(lambda: len(daemon.client.history(f)) == 2, what="the close version")

    def check(p: Path) -> None:
        st = os.stat(p)
        assert st.st_size == size
        assert st.st_blocks * 512 < 2 << 20, f"{p} restored with {st.st_blocks} blocks"
        with p.open("rb") as fh:
            fh.seek(data_at)
            assert fh.read(len(data)) == data
        assert b3(p.read_bytes()) == v1["hash"]

    copy = files.parent / "sparse-copy.img"
    r = daemon.cli("restore", str(f), "--version", v1["id"], "--to", str(copy))
    assert r.returncode == 0, r.stderr
    check(copy)
    r = daemon.cli("restore", str(f), "--version", v1["id"])
    assert r.returncode == 0, r.stderr
    check(f)
    os.link(f, files.parent / "sparse-link.img")  # in place into the inode: holes kept too
    r = daemon.cli("restore", str(f), "--version", history(daemon, f)[1]["id"])
    assert r.returncode == 0, r.stderr
    assert os.stat(f).st_blocks * 512 < 2 << 20
    assert os.stat(f).st_nlink == 2


def test_in_place_restore_stores_one_version_never_an_echo(daemon: Daemon, files: Path) -> None:
    f = files / "echo.txt"
    v1, v2 = protected_two_versions(daemon, f)
    r = daemon.cli("restore", str(f), "--version", v1["id"])
    assert r.returncode == 0, r.stderr
    assert_is_v1(f)
    # A real save afterwards is versioned; by the time it is, any echo of the
    # restore (its rename seen by the watcher) would have been stored before it.
    f.write_bytes(b"version three, a real save\n")
    wait_until(
        lambda: history(daemon, f)[-1]["hash"] == b3(b"version three, a real save\n"),
        what="the real save's version",
    )
    causes = [(v["cause"], v["hash"]) for v in history(daemon, f)]
    assert causes == [
        ("initial", v1["hash"]),
        ("close", v2["hash"]),
        ("restore", v2["hash"]),  # what the restore kept aside, and nothing else
        ("close", b3(b"version three, a real save\n")),
    ], causes


def test_after_in_place_restore_the_newest_state_is_the_restored_content(
    daemon: Daemon, files: Path, tmp_path: Path
) -> None:
    """Whatever the restore stores, verify and a restore of the latest state
    must see the restored content as the newest state, never what was replaced."""
    f = files / "newest.txt"
    v1, _v2 = protected_two_versions(daemon, f)
    assert daemon.cli("restore", str(f), "--version", v1["id"]).returncode == 0
    wait_until(lambda: daemon.client.verify(f)[0]["status"] == "ok", what="verify ok after restore")
    out = tmp_path / "latest.txt"
    assert daemon.cli("restore", str(f), "--to", str(out)).returncode == 0
    assert out.read_bytes() == b"version one\n"


def test_restoring_a_silently_corrupted_file_is_not_healed_back(
    daemon: Daemon, files: Path
) -> None:
    """The replaced content kept aside has the size and mtime of the version put
    back: the restored file is the newest good state, never taken for corruption
    (an auto entry was healed back to the corrupted content)."""
    f = files / "c.txt"
    f.write_bytes(b"good content\n")
    assert daemon.cli("add", str(f)).returncode == 0
    good = b3(b"good content\n")
    st = os.stat(f)
    with f.open("r+b") as fh:  # silent corruption: same size, same mtime before the close
        fh.write(b"BAD!")
        fh.flush()
        os.utime(fh.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))
    wait_until(
        lambda: any(e["kind"] == "corrupt" for e in daemon.client.events(f)), what="detection"
    )
    assert daemon.cli("restore", str(f)).returncode == 0
    assert f.read_bytes() == b"good content\n"
    kept = history(daemon, f)[-1]  # the corrupted content, kept aside; good is the state
    assert kept["cause"] == "restore" and kept["hash"] != good
    assert daemon.cli("update", str(f), "--recovery", "auto").returncode == 0
    r = daemon.cli("verify", str(f))
    assert r.returncode == 0 and r.stdout.startswith("ok "), r.stdout
    assert f.read_bytes() == b"good content\n"
