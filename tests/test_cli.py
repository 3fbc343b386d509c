"""The command line against a real daemon: JSON shapes, entry life cycle, the socket."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import blake3
import pytest

from tests.helpers import Daemon, run_cli, wait_until

STATUS_KEYS = {
    "path",
    "backup_mode",
    "recovery_mode",
    "state",
    "pending_change",
    "job_kind",
    "job_started_at",
    "worker_pid",
    "last_result",
    "last_error",
    "retries",
    "timeout_s",
    "keep",
    "recovery_requested",
    "versions",
    "last_backup_at",
}
HISTORY_KEYS = {"id", "time", "size", "hash", "cause"}
EVENT_KEYS = {"time", "path", "kind", "ok", "message"}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")


def cli_json(d: Daemon, *args: str) -> Any:
    r = d.cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def assert_iso_utc(value: Any) -> datetime:
    assert isinstance(value, str) and ISO_UTC.match(value), value
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    offset = parsed.utcoffset()
    assert offset is not None and offset.total_seconds() == 0
    # A time filetwin recorded during this test run, not a misread epoch.
    assert abs(parsed.timestamp() - datetime.now(UTC).timestamp()) < 3600
    return parsed


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def test_relative_path_becomes_absolute(daemon: Daemon, files: Path) -> None:
    (files / "rel.txt").write_text("relative\n")
    r = run_cli("--state-dir", str(daemon.state_dir), "add", "rel.txt", cwd=files)
    assert r.returncode == 0, r.stderr
    assert str(files / "rel.txt") in r.stdout
    [row] = cli_json(daemon, "status")
    assert row["path"] == str(files / "rel.txt")
    # Other commands resolve the same relative name to the same entry.
    r = run_cli("--state-dir", str(daemon.state_dir), "status", "rel.txt", "--json", cwd=files)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["path"] == str(files / "rel.txt")


def test_symlink_protects_its_target(daemon: Daemon, files: Path) -> None:
    real = files / "real.txt"
    real.write_text("the real one\n")
    link = files / "link.txt"
    link.symlink_to(real)
    r = daemon.cli("add", str(link))
    assert r.returncode == 0, r.stderr
    assert "symbolic link" in r.stdout
    assert f"protecting its target {real}" in r.stdout
    [row] = cli_json(daemon, "status")
    assert row["path"] == str(real)
    # The link still names the entry; adding the target again is a duplicate.
    assert cli_json(daemon, "status", str(link))[0]["path"] == str(real)
    r = daemon.cli("add", str(real))
    assert r.returncode == 1 and "already protected" in r.stderr
    assert link.is_symlink() and real.read_text() == "the real one\n"


def test_json_shapes(daemon: Daemon, files: Path) -> None:
    f = files / "shapes.txt"
    f.write_bytes(b"first\n")
    assert daemon.cli("add", str(f)).returncode == 0
    f.write_bytes(b"second version\n")
    wait_until(lambda: len(daemon.client.history(f)) == 2, what="the close version")

    [row] = cli_json(daemon, "status")
    assert set(row) >= STATUS_KEYS, STATUS_KEYS - set(row)
    assert row["path"] == str(f)
    assert (row["backup_mode"], row["recovery_mode"], row["retries"]) == ("on-close", "manual", 3)
    assert row["state"] == "watching" and row["pending_change"] == "none"
    assert row["versions"] == 2 and row["last_result"] == "ok" and row["last_error"] is None
    assert row["recovery_requested"] is False
    assert row["job_kind"] is None and row["job_started_at"] is None
    assert_iso_utc(row["last_backup_at"])
    assert cli_json(daemon, "status", str(f)) == [row]

    versions = cli_json(daemon, "history", str(f))
    assert [v["cause"] for v in versions] == ["initial", "close"]
    for v, content in zip(versions, [b"first\n", b"second version\n"], strict=True):
        assert set(v) >= HISTORY_KEYS, HISTORY_KEYS - set(v)
        assert v["hash"] == b3(content)
        assert v["size"] == len(content)
        assert re.fullmatch(r"[0-9a-f]{8,}", v["id"]), v["id"]
    times = [assert_iso_utc(v["time"]) for v in versions]
    assert times == sorted(times)
    assert row["last_backup_at"] == versions[-1]["time"]

    events = cli_json(daemon, "events")
    assert events, "no events"
    for e in events:
        assert set(e) >= EVENT_KEYS, EVENT_KEYS - set(e)
        assert_iso_utc(e["time"])
        assert isinstance(e["ok"], bool)
    kinds = [e["kind"] for e in events if e["path"] == str(f)]
    assert "added" in kinds and kinds.count("backup") == 2
    assert cli_json(daemon, "events", str(f)) == [e for e in events if e["path"] == str(f)]


def test_update_changes_policy(daemon: Daemon, files: Path) -> None:
    f = files / "policy.txt"
    f.write_text("policy\n")
    assert daemon.cli("add", str(f)).returncode == 0
    r = daemon.cli(
        "update", str(f), "--recovery", "notify", "--retries", "7", "--timeout", "12.5",
        "--keep", "9",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    row = daemon.client.status(f)
    assert (row["recovery_mode"], row["retries"], row["timeout_s"], row["keep"]) == (
        "notify",
        7,
        12.5,
        9,
    )
    assert row["backup_mode"] == "on-close" and row["pending_change"] == "none"
    assert row["state"] == "watching"
    # Watching goes on after an update: a close still makes a version.
    f.write_text("after update\n")
    wait_until(lambda: daemon.client.status(f)["versions"] == 2, what="version after update")
    assert daemon.client.history(f)[-1]["hash"] == b3(b"after update\n")


def test_pause_stops_versions_and_resume_takes_one(daemon: Daemon, files: Path) -> None:
    f = files / "paused.txt"
    f.write_text("before pause\n")
    assert daemon.cli("add", str(f)).returncode == 0
    r = daemon.cli("pause", str(f))
    assert r.returncode == 0, r.stderr
    assert daemon.client.status(f)["state"] == "paused"
    assert "already paused" in daemon.cli("pause", str(f)).stdout

    f.write_text("written while paused\n")
    r = daemon.cli("backup", str(f))
    assert r.returncode == 2 and "paused" in r.stderr, (r.stdout, r.stderr)
    assert len(daemon.client.history(f)) == 1

    r = daemon.cli("resume", str(f))
    assert r.returncode == 0, r.stderr
    assert daemon.client.status(f)["state"] == "watching"
    history = daemon.client.history(f)
    assert [v["cause"] for v in history] == ["initial", "manual"], history
    assert history[-1]["hash"] == b3(b"written while paused\n")
    assert "is not paused" in daemon.cli("resume", str(f)).stdout
    # Watching again: an explicit backup and a close both make versions.
    assert daemon.cli("backup", str(f)).returncode == 0
    f.write_text("after resume\n")
    wait_until(lambda: daemon.client.history(f)[-1]["cause"] == "close", what="close version")
    assert daemon.client.history(f)[-1]["hash"] == b3(b"after resume\n")


def test_remove_keeps_history_purge_deletes_it(daemon: Daemon, files: Path) -> None:
    f = files / "removed.txt"
    f.write_text("keep me\n")
    assert daemon.cli("add", str(f)).returncode == 0
    before = cli_json(daemon, "history", str(f))

    r = daemon.cli("remove", str(f))
    assert r.returncode == 0, r.stderr
    assert "history is kept" in r.stdout
    assert daemon.cli("status", str(f)).returncode == 1
    assert cli_json(daemon, "status") == []
    assert cli_json(daemon, "history", str(f)) == before
    # Removing stops watching: a write makes no version.
    f.write_text("unprotected write\n")
    assert f.read_text() == "unprotected write\n"

    r = daemon.cli("add", str(f))
    assert r.returncode == 0, r.stderr
    assert daemon.client.status(f)["state"] == "watching"
    after = cli_json(daemon, "history", str(f))
    assert after[: len(before)] == before
    assert after[-1]["cause"] == "initial" and after[-1]["hash"] == b3(b"unprotected write\n")
    assert daemon.client.status(f)["versions"] == len(after)

    r = daemon.cli("remove", str(f), "--purge")
    assert r.returncode == 0, r.stderr
    assert "history was deleted" in r.stdout
    r = daemon.cli("history", str(f))
    assert r.returncode != 0 and str(f) in r.stderr
    assert f.read_text() == "unprotected write\n"
    assert daemon.cli("check").returncode == 0


# --- the socket -------------------------------------------------------------


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("filetwin", timeout=30)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.path)
        self.sock = s


def raw_request(sock: Path, method: str, url: str, body: bytes | None) -> tuple[int, Any]:
    conn = UnixHTTP(str(sock))
    try:
        conn.request(method, url, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def api_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the socket tests, which change nothing."""
    d = Daemon(tmp_path_factory.mktemp("api") / "state").start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def sock(api_daemon: Daemon) -> Path:
    return api_daemon.state_dir / "filetwin.sock"


def test_socket_is_private(sock: Path) -> None:
    st = os.lstat(sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_openapi_over_curl(sock: Path) -> None:
    r = subprocess.run(
        ["curl", "-sS", "--unix-socket", str(sock), "http://filetwin/openapi.json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert "openapi" in doc and "/add" in doc.get("paths", {})


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"paths": "/x"}', "wrong type"),
    ],
)
def test_malformed_body_is_400(api_daemon: Daemon, sock: Path, body: bytes, words: str) -> None:
    status, answer = raw_request(sock, "POST", "/add", body)
    assert status == 400
    assert words in answer["error"] and answer["exit_code"] == 2
    assert api_daemon.client.status() == []
    assert not [e for e in api_daemon.client.events() if e["kind"] == "added"]


AS_NOBODY = """
import http.client, json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print(json.dumps({"connect": "EACCES"}))
    sys.exit(0)
c = http.client.HTTPConnection("filetwin")
c.sock = s
c.request("GET", "/status")
r = c.getresponse()
print(json.dumps({"connect": "ok", "status": r.status, "body": json.loads(r.read())}))
"""


def as_nobody(sock: Path) -> dict[str, Any]:
    r = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        + [sys.executable, "-c", AS_NOBODY, str(sock)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    result: dict[str, Any] = json.loads(r.stdout)
    return result


@pytest.fixture
def reachable_sock(sock: Path) -> Iterator[Path]:
    """A hard link to the daemon's socket in a directory anyone may search.

    The state directory is 0700, so without this nobody fails at the directory
    and the socket's own mode would never be tested.
    """
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv")
    if os.stat(tempfile.gettempdir()).st_mode & 0o001 == 0:
        pytest.skip(f"{tempfile.gettempdir()} is not searchable by others")
    d = Path(tempfile.mkdtemp())
    d.chmod(0o711)
    link = d / "api.sock"
    try:
        os.link(sock, link)
    except OSError as e:
        shutil.rmtree(d)
        pytest.skip(f"cannot link the socket into {d}: {e}")
    try:
        yield link
    finally:
        os.chmod(sock, 0o600)
        shutil.rmtree(d)


def test_other_users_are_refused(api_daemon: Daemon, sock: Path, reachable_sock: Path) -> None:
    assert as_nobody(reachable_sock) == {"connect": "EACCES"}
    # With the mode opened up, the peer-credential check still refuses.
    os.chmod(sock, 0o666)
    answer = as_nobody(reachable_sock)
    assert answer["connect"] == "ok"
    assert answer["status"] == 403
    assert "uid 65534 may not use" in answer["body"]["error"]
    os.chmod(sock, 0o600)
    assert api_daemon.client.status() == []


def test_config_defaults_apply_to_new_entries(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    d = make_daemon("defaults", default_keep=7, default_retries=1)
    f = files / "defaults.txt"
    f.write_text("x\n")
    assert d.cli("add", str(f)).returncode == 0
    row = d.client.status(f)
    assert (row["keep"], row["retries"]) == (7, 1)
    g = files / "explicit.txt"
    g.write_text("y\n")
    assert d.cli("add", str(g), "--keep", "3", "--retries", "0").returncode == 0
    assert (d.client.status(g)["keep"], d.client.status(g)["retries"]) == (3, 0)
