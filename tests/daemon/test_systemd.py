"""systemd: the notify protocol against a real datagram socket, journal logging,
and ``filetwin service install`` (with ``systemd-analyze verify`` when present)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import Daemon, run_cli


@pytest.fixture(params=["path", "abstract"])
def notify_socket(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[socket.socket]:
    """A datagram socket named by NOTIFY_SOCKET (a path, or an @abstract name)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        where = str(tmp_path / "notify.sock")
        sock.bind(where)
        monkeypatch.setenv("NOTIFY_SOCKET", where)
    else:
        name = f"filetwin-test-{uuid.uuid4().hex}"
        sock.bind(b"\0" + name.encode())
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    sock.settimeout(15)
    yield sock
    sock.close()


def _messages(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_ready_watchdog_and_stopping_reach_the_notify_socket(
    notify_socket: socket.socket,
    make_daemon: Callable[..., Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # pings every 50 ms
    d = make_daemon()
    # Pings may come while the daemon starts (systemd's watchdog runs then too).
    first = _messages(notify_socket)
    while first == {"WATCHDOG": "1"}:
        first = _messages(notify_socket)
    assert first.get("READY") == "1", first
    assert first["MAINPID"] == str(d.pid)
    # The daemon answered before READY was read: it serves when it says so.
    assert d.client.ping()
    pings = 0
    while pings < 3:
        msg = _messages(notify_socket)
        assert msg == {"WATCHDOG": "1"}, msg
        pings += 1
    assert d.stop() == 0
    rest = []
    while True:
        msg = _messages(notify_socket)
        rest.append(msg)
        if "STOPPING" in msg:
            break
    assert rest[-1]["STOPPING"] == "1"
    assert all(m == {"WATCHDOG": "1"} for m in rest[:-1])


def test_no_watchdog_pings_without_watchdog_usec(
    tmp_path: Path, make_daemon: Callable[..., Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "n.sock"))
    sock.settimeout(15)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "n.sock"))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    d = make_daemon()
    assert _messages(sock)["READY"] == "1"
    d.stop()
    assert _messages(sock)["STOPPING"] == "1"
    sock.close()


def test_logs_have_no_timestamp_when_stderr_is_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = Daemon(tmp_path / "state")
    d.log_path.touch()
    st = d.log_path.stat()
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    d.start()
    d.stop()
    lines = [line for line in d.log().splitlines() if line]
    ready = [line for line in lines if " ready on " in line]
    assert ready and ready[0].startswith("<6>INFO filetwin daemon "), lines
    assert all(line.startswith("<") for line in lines), lines


def test_logs_keep_their_timestamp_when_journal_stream_names_another_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "1:1")
    d = Daemon(tmp_path / "state")
    d.start()
    d.stop()
    ready = [line for line in d.log().splitlines() if " ready on " in line]
    assert ready and ready[0][:2] == "20" and "filetwin[" in ready[0], ready


def _installed_filetwin() -> str:
    return str(Path(sys.executable).parent / "filetwin")


def test_service_install_writes_the_system_unit(tmp_path: Path) -> None:
    dest = tmp_path / "system"
    r = run_cli("service", "install", "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    unit = (dest / "filetwin.service").read_text()
    assert f"\nExecStart={_installed_filetwin()} daemon\n" in unit
    assert "\nType=notify\n" in unit and "\nWatchdogSec=" in unit
    assert "\nWantedBy=multi-user.target\n" in unit
    assert (dest / "filetwin.service").stat().st_mode & 0o777 == 0o644
    assert f"wrote {dest / 'filetwin.service'}" in r.stdout
    assert "systemctl enable --now filetwin" in r.stdout
    assert "--user" not in r.stdout
    assert [p.name for p in dest.iterdir()] == ["filetwin.service"]  # no temp left


def test_service_install_user_passes_state_dir_and_config_on(tmp_path: Path) -> None:
    dest = tmp_path / "user"
    state = tmp_path / "my state"
    config = tmp_path / "c%1.toml"
    config.write_text("")
    r = run_cli(
        "--state-dir", str(state), "--config", str(config),
        "service", "install", "--user", "--dest", str(dest),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    unit = (dest / "filetwin.service").read_text()
    expected = (
        f'ExecStart={_installed_filetwin()} --state-dir "{state}" '
        f'--config "{str(config).replace("%", "%%")}" daemon'
    )
    assert expected in unit.splitlines()
    assert "\nWantedBy=default.target\n" in unit
    assert "systemctl --user enable --now filetwin" in r.stdout
    assert "loginctl enable-linger" in r.stdout


def test_service_install_dry_run_writes_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "nothing"
    r = run_cli("service", "install", "--dry-run", "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    assert not dest.exists()
    assert f"would write {dest / 'filetwin.service'}" in r.stdout
    assert "Type=notify" in r.stdout


def test_service_install_replaces_a_symlink_instead_of_following_it(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (dest / "filetwin.service").symlink_to(victim)
    r = run_cli("service", "install", "--dest", str(dest))
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "keep me"
    assert not (dest / "filetwin.service").is_symlink()


@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_written_units_pass_systemd_analyze_verify(tmp_path: Path, user: bool) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (it comes with systemd)")
    dest = tmp_path / "units"
    args = ["service", "install", "--dest", str(dest)] + (["--user"] if user else [])
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    verify = [analyze, "verify", *(["--user"] if user else []), str(dest / "filetwin.service")]
    v = subprocess.run(verify, capture_output=True, text=True, env=env, timeout=60)
    assert v.returncode == 0 and not v.stderr.strip(), v.stderr


def test_watchdog_pid_of_another_process_and_bad_addresses_send_nothing() -> None:
    from filetwin.daemon.sdnotify import Notifier, socket_address

    other = Notifier({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert other.watchdog_s is None  # meant for another process
    mine = Notifier(
        {"NOTIFY_SOCKET": "@n", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert mine.watchdog_s == 3.0
    assert socket_address("@abc") == b"\0abc"
    assert socket_address("relative") is None and socket_address("@") is None
    assert not Notifier({}).send("READY=1")  # not under systemd: nothing, no error
    gone = Notifier({"NOTIFY_SOCKET": "/nonexistent/notify.sock"})
    assert not gone.send("READY=1")  # a failed send is logged, never raised
