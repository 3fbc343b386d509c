"""The state directory is 0700 and ours: an existing one is tightened, one of
another uid (or a symlink) is refused."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from filetwin.config import Config
from filetwin.errors import PermissionDenied
from tests.helpers import Daemon


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_existing_state_dir_is_tightened_by_the_daemon(
    tmp_path: Path, make_daemon: Callable[..., Daemon]
) -> None:
    sd = tmp_path / "state"
    sd.mkdir(mode=0o755)
    sd.chmod(0o755)
    assert mode(sd) == 0o755
    daemon = make_daemon("state")
    assert mode(sd) == 0o700
    assert daemon.client.ping()


def test_new_state_dir_is_0700(tmp_path: Path) -> None:
    cfg = Config.load(state_dir=tmp_path / "a" / "state")
    old = os.umask(0)
    try:
        cfg.ensure_state_dir()
    finally:
        os.umask(old)
    assert mode(tmp_path / "a" / "state") == 0o700


def test_state_dir_of_another_uid_or_symlink_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 1234, 1234)
    with pytest.raises(PermissionDenied, match="belongs to uid 1234"):
        Config.load(state_dir=theirs).ensure_state_dir()
    assert mode(theirs) == 0o755 and os.stat(theirs).st_uid == 1234
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "mine")
    (tmp_path / "mine").mkdir(mode=0o755)
    with pytest.raises(PermissionDenied, match="symbolic link"):
        Config.load(state_dir=link).ensure_state_dir()
    assert mode(tmp_path / "mine") == 0o755
    # The daemon refuses to start on it, with the message, instead of using it.
    r = subprocess.run(
        [sys.executable, "-m", "filetwin", "--state-dir", str(theirs), "daemon"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "belongs to uid 1234" in r.stderr
    assert os.listdir(theirs) == []
