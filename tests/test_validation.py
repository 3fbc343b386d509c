"""Bad input is refused with a message naming the problem, and nothing changes.

One daemon serves the whole module: every case takes a snapshot of the
management table, the event log and the files involved before and after the
refused request and requires them to be equal.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from filetwin import Conflict, NotFound, UsageError
from filetwin.errors import FiletwinError
from tests.helpers import Daemon


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("validation")
    d = Daemon(root / "state").start()
    existing = root / "existing.txt"
    existing.write_text("already protected\n")
    d.client.add(existing)
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def existing(shared: Daemon) -> Path:
    return shared.state_dir.parent / "existing.txt"


def snapshot(d: Daemon, *paths: Path) -> dict[str, Any]:
    """Everything a refused request must leave alone."""
    files = {}
    for p in paths:
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            files[str(p)] = (p.read_bytes(), st.st_mtime_ns, st.st_mode)
    return {"status": d.client.status(), "events": d.client.events(), "files": files}


def unchanged(d: Daemon, before: dict[str, Any], *paths: Path) -> None:
    after = snapshot(d, *paths)
    assert after["status"] == before["status"]
    assert [e for e in after["events"] if e["kind"] == "added"] == [
        e for e in before["events"] if e["kind"] == "added"
    ]
    assert after["events"] == before["events"]
    assert after["files"] == before["files"]


def make_good(files: Path) -> Path:
    good = files / "good.txt"
    good.write_text("good\n")
    return good


# Each case: (build args from (files dir, existing entry)) -> args, exit code, words in stderr.
ArgsFn = Callable[[Path, Path], list[str]]

CLI_ADD_CASES: dict[str, tuple[ArgsFn, int, list[str]]] = {
    "missing": (lambda f, e: [str(f / "nope.txt")], 2, ["nope.txt", "does not exist"]),
    "directory": (lambda f, e: [str(f)], 2, ["is a directory"]),
    "device": (lambda f, e: ["/dev/null"], 2, ["/dev/null", "not a regular file"]),
    "fifo": (lambda f, e: [str(f / "fifo")], 2, ["fifo", "not a regular file"]),
    "dangling-link": (lambda f, e: [str(f / "dangling")], 2, ["dangling", "does not exist"]),
    "duplicate": (lambda f, e: [str(e)], 1, ["existing.txt", "already protected"]),
    "twice": (lambda f, e: [str(make_good(f))] * 2, 2, ["good.txt", "given twice"]),
    "mixed": (
        lambda f, e: [str(make_good(f)), str(f / "nope.txt")],
        2,
        ["nope.txt", "does not exist"],
    ),
    "mixed-duplicate": (lambda f, e: [str(make_good(f)), str(e)], 1, ["already protected"]),
    "retries-negative": (lambda f, e: [str(make_good(f)), "--retries", "-1"], 2, ["--retries"]),
    "retries-too-many": (lambda f, e: [str(make_good(f)), "--retries", "101"], 2, ["--retries"]),
    "retries-not-int": (lambda f, e: [str(make_good(f)), "--retries", "two"], 2, ["--retries"]),
    "keep-zero": (lambda f, e: [str(make_good(f)), "--keep", "0"], 2, ["--keep"]),
    "timeout-zero": (lambda f, e: [str(make_good(f)), "--timeout", "0"], 2, ["--timeout"]),
    "timeout-negative": (lambda f, e: [str(make_good(f)), "--timeout", "-5"], 2, ["--timeout"]),
    "bad-backup": (
        lambda f, e: [str(make_good(f)), "--backup", "sometimes"],
        2,
        ["--backup", "sometimes"],
    ),
    "bad-recovery": (
        lambda f, e: [str(make_good(f)), "--recovery", "never"],
        2,
        ["--recovery", "never"],
    ),
    "no-path": (lambda f, e: [], 2, ["PATHS"]),
}


@pytest.mark.parametrize("case", sorted(CLI_ADD_CASES))
def test_cli_add_refuses(shared: Daemon, existing: Path, files: Path, case: str) -> None:
    build, code, words = CLI_ADD_CASES[case]
    os.mkfifo(files / "fifo")
    (files / "dangling").symlink_to(files / "gone")
    args = build(files, existing)
    paths = [files / "good.txt", existing]
    before = snapshot(shared, *paths)
    r = shared.cli("add", *args)
    assert r.returncode == code, (r.stdout, r.stderr)
    for word in words:
        assert word in r.stderr, r.stderr
    assert "protecting" not in r.stdout
    unchanged(shared, before, *paths)
    # A refused good file got no history either.
    assert shared.cli("history", str(files / "good.txt")).returncode != 0


CLIENT_ADD_CASES: dict[str, tuple[Callable[[Path, Path], dict[str, Any]], type, str]] = {
    "missing": (lambda f, e: {"paths": [f / "nope.txt"]}, UsageError, "does not exist"),
    "directory": (lambda f, e: {"paths": [f]}, UsageError, "is a directory"),
    "device": (lambda f, e: {"paths": ["/dev/null"]}, UsageError, "not a regular file"),
    "fifo": (lambda f, e: {"paths": [f / "fifo"]}, UsageError, "not a regular file"),
    "duplicate": (lambda f, e: {"paths": [e]}, Conflict, "already protected"),
    "twice": (lambda f, e: {"paths": [make_good(f)] * 2}, UsageError, "given twice"),
    "mixed": (
        lambda f, e: {"paths": [make_good(f), f / "nope.txt"]},
        UsageError,
        "nope.txt does not exist",
    ),
    "retries-negative": (
        lambda f, e: {"paths": [make_good(f)], "retries": -1},
        UsageError,
        "retries must be",
    ),
    "retries-too-many": (
        lambda f, e: {"paths": [make_good(f)], "retries": 101},
        UsageError,
        "retries must be",
    ),
    "keep-zero": (lambda f, e: {"paths": [make_good(f)], "keep": 0}, UsageError, "keep must be"),
    "timeout-zero": (
        lambda f, e: {"paths": [make_good(f)], "timeout": 0},
        UsageError,
        "timeout must be",
    ),
    "timeout-negative": (
        lambda f, e: {"paths": [make_good(f)], "timeout": -5},
        UsageError,
        "timeout must be",
    ),
    "bad-backup": (
        lambda f, e: {"paths": [make_good(f)], "backup": "sometimes"},
        UsageError,
        "backup mode must be one of on-close, on-write",
    ),
    "bad-recovery": (
        lambda f, e: {"paths": [make_good(f)], "recovery": "never"},
        UsageError,
        "recovery mode must be one of auto, manual, notify",
    ),
    "no-path": (lambda f, e: {"paths": []}, UsageError, "at least one path"),
}


@pytest.mark.parametrize("case", sorted(CLIENT_ADD_CASES))
def test_client_add_refuses(shared: Daemon, existing: Path, files: Path, case: str) -> None:
    build, exc, words = CLIENT_ADD_CASES[case]
    os.mkfifo(files / "fifo")
    kwargs = build(files, existing)
    paths = [files / "good.txt", existing]
    before = snapshot(shared, *paths)
    with pytest.raises(exc, match=words):
        shared.client.add(*kwargs.pop("paths"), **kwargs)
    unchanged(shared, before, *paths)


RAW_ADD_BODIES: dict[str, tuple[dict[str, Any], str]] = {
    "relative": ({"paths": ["relative.txt"]}, "relative.txt is not an absolute path"),
    "paths-not-list": ({"paths": "/etc/hostname"}, "'paths' has the wrong type"),
    "paths-missing": ({}, "missing field 'paths'"),
    "path-not-str": ({"paths": [42]}, "not a path: 42"),
    "nul-byte": ({"paths": ["/tmp/a\0b"]}, "NUL byte"),
    "retries-bool": ({"paths": ["/etc/hostname"], "retries": True}, "retries must be"),
    "retries-str": ({"paths": ["/etc/hostname"], "retries": "3"}, "retries must be"),
    "timeout-str": ({"paths": ["/etc/hostname"], "timeout": "10"}, "timeout must be"),
    "unknown-key": ({"paths": ["/etc/hostname"], "colour": "red"}, "unknown field.*'colour'"),
}


@pytest.mark.parametrize("case", sorted(RAW_ADD_BODIES))
def test_api_add_refuses_malformed_bodies(shared: Daemon, case: str) -> None:
    payload, words = RAW_ADD_BODIES[case]
    before = snapshot(shared)
    with pytest.raises(UsageError, match=words):
        shared.client.request("POST", "/add", payload)
    unchanged(shared, before)


@pytest.mark.parametrize("command", ["update", "pause", "resume", "remove", "backup", "status"])
def test_unknown_entry_is_named(shared: Daemon, files: Path, command: str) -> None:
    ghost = files / "ghost.txt"
    ghost.write_text("not protected\n")
    args = [command, str(ghost)] + (["--keep", "3"] if command == "update" else [])
    before = snapshot(shared, ghost)
    r = shared.cli(*args)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"{ghost} is not protected" in r.stderr
    unchanged(shared, before, ghost)


@pytest.mark.parametrize("method", ["update", "pause", "resume", "remove", "backup", "status"])
def test_client_unknown_entry_is_notfound(shared: Daemon, files: Path, method: str) -> None:
    ghost = files / "ghost.txt"
    before = snapshot(shared)
    call: Callable[..., Any] = getattr(shared.client, method)
    kwargs = {"keep": 3} if method == "update" else {}
    with pytest.raises(NotFound, match="ghost.txt is not protected"):
        call(ghost, **kwargs)
    unchanged(shared, before)


def test_update_without_options_is_usage(shared: Daemon, existing: Path) -> None:
    before = snapshot(shared, existing)
    r = shared.cli("update", str(existing))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "nothing to update" in r.stderr
    with pytest.raises(UsageError, match="nothing to update"):
        shared.client.update(existing)
    unchanged(shared, before, existing)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--retries", "101"], "--retries"),
        (["--keep", "0"], "--keep"),
        (["--timeout", "0"], "--timeout"),
        (["--backup", "hourly"], "--backup"),
    ],
)
def test_update_refuses_bad_policy(
    shared: Daemon, existing: Path, options: list[str], words: str
) -> None:
    before = snapshot(shared, existing)
    r = shared.cli("update", str(existing), *options)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert words in r.stderr
    with pytest.raises(UsageError, match="keep must be"):
        shared.client.update(existing, keep=0)
    with pytest.raises(UsageError, match="unknown field.*'colour'"):
        shared.client.update(existing, colour="red")
    unchanged(shared, before, existing)


def test_restore_refuses_both_version_and_at(shared: Daemon, existing: Path) -> None:
    before = snapshot(shared, existing)
    r = shared.cli("restore", str(existing), "--version", "abcd", "--at", "0")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "either --version or --at" in r.stderr
    unchanged(shared, before, existing)


def test_errors_keep_their_type_over_the_socket(shared: Daemon, existing: Path) -> None:
    """The client re-raises the daemon's exception class, so exit codes survive."""
    with pytest.raises(Conflict) as info:
        shared.client.add(existing)
    assert isinstance(info.value, FiletwinError)
    assert info.value.exit_code == 1


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"path": "relative.txt"}, "relative.txt is not an absolute path"),
        ({"path": 7}, "'path' has the wrong type"),
        ({}, "missing field 'path'"),
        ({"path": "<existing>", "to": "copy.txt"}, "destination copy.txt is not an absolute"),
        ({"path": "<existing>", "at": [1]}, "'at' has the wrong type"),
        ({"path": "<existing>", "at": "soon"}, "neither ISO 8601"),
        ({"path": "<existing>", "version": "xy"}, "at least 4 hex"),
    ],
)
def test_api_restore_refuses_malformed_bodies(
    shared: Daemon, existing: Path, payload: dict[str, Any], words: str
) -> None:
    if payload.get("path") == "<existing>":
        payload = {**payload, "path": str(existing)}
    before = snapshot(shared, existing)
    with pytest.raises(UsageError, match=words):
        shared.client.request("POST", "/restore", payload)
    after = snapshot(shared, existing)
    assert after["files"] == before["files"] and after["status"] == before["status"]
    assert not (Path.cwd() / "copy.txt").exists()


def test_events_of_a_symlink_are_its_targets(shared: Daemon, existing: Path, files: Path) -> None:
    link = files / "link.txt"
    link.symlink_to(existing)
    events = shared.client.events(existing)
    assert events and shared.client.events(link) == events
