"""A real daemon on an encrypted repository: created from the config's
``encryption`` at the first start, versions stored by the worker processes with
the keys handed over their pipe, nothing of the content or the names in clear,
restart with the passphrase, refusal without it or with a wrong one."""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from filetwin.backends import LocalBackend
from filetwin.repo import format as fmt
from tests.helpers import Daemon

from .v2kit import PASSPHRASE, make_repository, tree

WORDS = [b"alpha", b"bravo", b"charlie", b"delta", b"echo", b"foxtrot", b"golf"]


def text(seed: int, size: int) -> bytes:
    """Compressible content (what zstd alone would not hide), with a marker."""
    rng = random.Random(seed)
    out = b"MARKER-%d-" % seed
    while len(out) < size:
        out += rng.choice(WORDS) + b" "
    return out[:size]


def children(pid: int) -> list[int]:
    """The daemon's child processes (its workers)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    assert out, "the daemon has no worker processes"
    return out


def in_clear(root: Path, needles: list[bytes]) -> list[str]:
    """The files under ``root`` holding any of ``needles`` as they are."""
    hits = []
    for p in root.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            hits += [f"{p}: {n[:20]!r}" for n in needles if n in data]
    return hits


def needles(data: bytes, path: Path) -> list[bytes]:
    # Pieces of the content from its start, middle and end, and the file's name.
    n = len(data)
    return [data[:32], data[n // 2 : n // 2 + 32], data[-32:], path.name.encode()]


@pytest.mark.parametrize("mode", ["none", "repokey"])
def test_daemon_stores_encrypted_versions(
    make_daemon: Callable[..., Daemon],
    tmp_path: Path,
    files: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    """With ``none`` the same greps find the content: they do look."""
    monkeypatch.setenv("FILETWIN_PASSWORD", PASSPHRASE)
    d = make_daemon(encryption=mode, workers=2)
    loc = d.state_dir / "repository"
    info = fmt.read_info(LocalBackend(loc))
    assert info is not None and (info.version, info.encryption) == (2, mode)
    assert (loc / "keys" / "repokey").exists() == (mode == "repokey")

    paths = [files / "secret-ledger.txt", files / "diary-entry.txt"]
    contents = {p: text(i, 300_000) for i, p in enumerate(paths)}
    for p, data in contents.items():
        p.write_bytes(data)
    d.client.add(*map(str, paths))
    p0 = paths[0]
    edited = contents[p0] + text(9, 50_000)
    p0.write_bytes(edited)  # a close: the worker stores a second version
    v = d.client.backup(str(p0))
    assert v["hash"]
    history = d.client.history(str(p0))
    assert len(history) >= 2

    look = [n for p, data in contents.items() for n in needles(data, p)] + needles(edited, p0)
    hits = in_clear(loc, look)
    if mode == "none":
        assert hits  # the control: unencrypted, content and all are there to read
    else:
        assert hits == []

    d.restart()
    assert [h["id"] for h in d.client.history(str(p0))] == [h["id"] for h in history]
    for i, h in enumerate(history):
        dest = tmp_path / f"out{i}"
        d.client.restore(str(p0), version=h["id"], to=str(dest))
        assert dest.read_bytes() in (contents[p0], edited)
    assert (tmp_path / f"out{len(history) - 1}").read_bytes() == edited

    # Workers killed: the ones that replace them get the keys too.
    for pid in children(d.pid):
        os.kill(pid, signal.SIGKILL)
    p1 = paths[1]
    p1.write_bytes(text(11, 100_000))
    v = d.client.backup(str(p1))
    dest = tmp_path / "after-kill"
    d.client.restore(str(p1), version=v["id"], to=str(dest))
    assert dest.read_bytes() == text(11, 100_000)

    d.stop()
    r = d.cli("check", "--read-data")
    assert r.returncode == 0, r.stderr


def test_daemon_refuses_to_start_without_the_right_passphrase(
    tmp_path: Path, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FILETWIN_PASSWORD", PASSPHRASE)
    # Made with the cheap KDF (the daemon's creation is tested above): each
    # start below unlocks it in no time.
    make_repository(tmp_path / "state" / "repository", "repokey")
    d = Daemon(tmp_path / "state", {"encryption": "repokey"})
    d.start()
    f = files / "f"
    f.write_bytes(b"kept\n")
    d.client.add(str(f))
    d.stop()
    before = tree(tmp_path / "state" / "repository")

    monkeypatch.setenv("FILETWIN_PASSWORD", "not it")
    with pytest.raises(AssertionError, match="wrong passphrase"):
        d.start()
    monkeypatch.delenv("FILETWIN_PASSWORD")
    with pytest.raises(AssertionError, match="FILETWIN_PASSWORD"):
        d.start()
    d.proc = None
    assert tree(tmp_path / "state" / "repository") == before


def test_encryption_asked_for_an_existing_unencrypted_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``encryption`` applies when a repository is created: asked for with an
    existing unencrypted repository, the daemon refuses to start (saying why)
    instead of storing in the clear; nothing is changed."""
    monkeypatch.setenv("FILETWIN_PASSWORD", PASSPHRASE)
    loc = tmp_path / "state" / "repository"
    make_repository(loc, "none")
    before = tree(loc)
    d = Daemon(tmp_path / "state", {"encryption": "repokey"})
    with pytest.raises(AssertionError, match="exists unencrypted"):
        d.start()
    d.proc = None
    assert tree(loc) == before
