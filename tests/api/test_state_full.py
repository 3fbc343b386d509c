"""A full state directory: every answer is still the JSON error shape.

Before: SQLite's "database or disk is full" escaped the handler and aiohttp
answered a plain-text HTTP 500. The state directory here is a real 2 MiB
tmpfs filled to the last block; the repository lives elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.rawhttp import assert_error, raw_request
from tests.helpers import Daemon


@pytest.fixture
def small_state_dir(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(state)], check=True)
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem has no block left; return it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = b"\0" * 4096
        while True:
            try:
                os.write(fd, block)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
    finally:
        os.close(fd)
    return filler


def test_a_full_state_directory_answers_507_json(small_state_dir: Path, tmp_path: Path) -> None:
    d = Daemon(small_state_dir, {"repository": str(tmp_path / "repository")}).start()
    try:
        target = tmp_path / "notes.txt"
        target.write_text("protected\n")
        other = tmp_path / "other.txt"
        other.write_text("not yet\n")
        d.client.add(target)
        filler = fill(small_state_dir)

        # Table writes of several kinds: each is a clear error, never plain text.
        answers = []
        for _ in range(3):  # SQLite may absorb a write in a page it still has
            answers.append(
                raw_request(d.socket_path, "POST", "/pause", json.dumps({"path": str(target)}))
            )
            answers.append(
                raw_request(d.socket_path, "POST", "/resume", json.dumps({"path": str(target)}))
            )
            answers.append(
                raw_request(d.socket_path, "POST", "/add", json.dumps({"paths": [str(other)]}))
            )
        failed = [(s, a) for s, a in answers if s != 200]
        assert failed, "no table write failed on a full state directory"
        for status, answer in failed:
            assert_error((status, answer), 507)
            assert "full" in answer["error"] or "space" in answer["error"], answer
        assert raw_request(d.socket_path, "GET", "/health")[0] == 200
        log = d.log()
        assert "Traceback" not in log, log[-3000:]

        # Space back: the daemon works again without a restart.
        filler.unlink()
        with contextlib.suppress(Exception):
            d.client.resume(target)
        status, answer = raw_request(
            d.socket_path, "POST", "/pause", json.dumps({"path": str(target)})
        )
        assert status == 200, answer
    finally:
        d.stop()


def test_a_restore_on_a_full_state_directory_is_reported_done(
    small_state_dir: Path, tmp_path: Path
) -> None:
    """Before: the restore worked, its event could not be written, and the
    restore was answered as failed. Now the event is kept until it can be
    stored, and the answer says what happened."""
    d = Daemon(small_state_dir, {"repository": str(tmp_path / "repository")}).start()
    try:
        target = tmp_path / "notes.txt"
        target.write_text("protected\n")
        d.client.add(target)
        [v1] = d.client.history(target)
        filler = fill(small_state_dir)
        dest = tmp_path / "then.txt"
        result = d.client.restore(target, version=v1["id"], to=str(dest))
        assert dest.read_text() == "protected\n"
        assert result["target"] == str(dest)
        pending = [e for e in d.client.events(target) if e["kind"] == "restore"]
        assert pending and pending[-1]["ok"] is True, pending
        assert pending[-1]["id"] is None, "the table took the event: the disk was not full"
        filler.unlink()
        target.write_text("protected, v2\n")  # the next event stores the kept ones first
        d.client.backup(target)
        stored = [e for e in d.client.events(target) if e["kind"] == "restore"]
        assert stored[-1]["id"] is not None
    finally:
        d.stop()
