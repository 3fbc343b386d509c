"""One configuration every command reads (issue 12, point 1): the daemon and the
offline commands agree on the repository; unknown keys are errors; an offline
command on a location that holds no repository fails and creates nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from filetwin import Client, DaemonUnavailable
from tests.helpers import Daemon, run_cli, wait_until


@pytest.fixture
def elsewhere(
    make_daemon: Callable[..., Daemon], tmp_path: Path, files: Path
) -> tuple[Daemon, Path, Path]:
    """A daemon whose config names a repository outside its state directory,
    protecting one file with two versions."""
    repo = tmp_path / "srv-repo"
    d = make_daemon("state", repository=str(repo))
    f = files / "notes.txt"
    f.write_text("first\n")
    assert d.cli("add", str(f)).returncode == 0
    assert d.cli("backup", str(f)).returncode == 0
    return d, repo, f


def test_offline_commands_use_the_repository_the_entries_were_stored_in(
    elsewhere: tuple[Daemon, Path, Path], tmp_path: Path
) -> None:
    d, repo, f = elsewhere
    # No --config: check finds the daemon's repository through the table, not
    # an empty STATE/repository.
    r = d.cli("check")
    assert r.returncode == 0, r.stderr
    assert f"repository {repo} is healthy" in r.stdout
    assert not (d.state_dir / "repository").exists()
    d.stop()
    r = d.cli("history", str(f), "--json")
    assert r.returncode == 0, r.stderr
    assert [v["cause"] for v in json.loads(r.stdout)] == ["initial", "manual"]
    out = tmp_path / "back.txt"
    r = d.cli("restore", str(f), "--to", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_text() == "first\n"
    # With the daemon's config named (--config, or FILETWIN_CONFIG), the same.
    r = d.cli("--config", str(d.config_path), "check")
    assert r.returncode == 0 and str(repo) in r.stdout, r.stderr


def test_config_from_environment_is_read_by_offline_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'repository = "{tmp_path}/nowhere"\n')
    monkeypatch.setenv("FILETWIN_CONFIG", str(cfg))
    r = run_cli("--state-dir", str(tmp_path / "state"), "check")
    assert r.returncode == 1
    assert f"no repository at {tmp_path}/nowhere" in r.stderr
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "state").exists()


def test_check_of_a_typo_creates_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "typo"
    for args in (["check"], ["check", "--read-data"], ["history", str(tmp_path / "x")],
                 ["restore", str(tmp_path / "x"), "--to", str(tmp_path / "y")]):  # fmt: skip
        r = run_cli("--state-dir", str(typo), *args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "no repository at" in r.stderr and "--state-dir" in r.stderr
        assert not typo.exists(), args
        assert not (tmp_path / "y").exists()


def test_check_of_an_empty_directory_fails(tmp_path: Path) -> None:
    (tmp_path / "state" / "repository").mkdir(parents=True)
    r = run_cli("--state-dir", str(tmp_path / "state"), "check")
    assert r.returncode == 1 and "holds no versions" in r.stderr
    assert "healthy" not in r.stdout
    assert os.listdir(tmp_path / "state") == ["repository"]


def test_unknown_key_is_named_with_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("workers = 2\nwrokers = 2\n")
    for args in (["status"], ["check"], ["daemon"]):
        r = run_cli("--state-dir", str(tmp_path / "s"), "--config", str(cfg), *args)
        assert r.returncode == 2, (args, r.stderr)
        assert f"config file {cfg}, line 2: unknown setting 'wrokers'" in r.stderr
    assert not (tmp_path / "s").exists()
    r = run_cli("--state-dir", str(tmp_path / "s"), "--config", str(tmp_path / "none.toml"),
                "status")  # fmt: skip
    assert r.returncode == 2 and "none.toml does not exist" in r.stderr


def test_daemon_reads_config_named_by_environment(
    tmp_path: Path, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`filetwin daemon` without --config reads $FILETWIN_CONFIG like every command."""
    cfg = tmp_path / "env.toml"
    cfg.write_text(f'repository = "{tmp_path}/envrepo"\ndefault_keep = 7\n')
    monkeypatch.setenv("FILETWIN_CONFIG", str(cfg))
    state = tmp_path / "state"
    log = (tmp_path / "d.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "filetwin", "daemon", "--state-dir", str(state)],
        stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    client = Client(socket_path=state / "filetwin.sock", timeout=30)
    try:
        wait_until(lambda: _answers(client, proc), 30, "the daemon to answer")
        f = files / "a.txt"
        f.write_text("a\n")
        assert run_cli("--state-dir", str(state), "add", str(f)).returncode == 0
        assert client.status(f)["keep"] == 7
        assert (tmp_path / "envrepo" / "manifests").is_dir()
        r = run_cli("--state-dir", str(state), "check")
        assert r.returncode == 0 and f"{tmp_path}/envrepo" in r.stdout, r.stderr
    finally:
        proc.terminate()
        proc.wait(60)


def _answers(client: Client, proc: subprocess.Popen[bytes]) -> bool:
    assert proc.poll() is None, "the daemon exited"
    try:
        client.ping()
    except DaemonUnavailable:
        return False
    return True
