"""The API from any language: curl over the daemon's Unix socket drives on-write."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Daemon, wait_until

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def curl(daemon: Daemon, method: str, url: str, body: Any = None) -> tuple[int, Any]:
    """One request with curl; returns (HTTP status, decoded JSON body)."""
    args = [
        "curl",
        "--silent",
        "--show-error",
        "--unix-socket",
        str(daemon.socket_path),
        "-X",
        method,
        "--write-out",
        "\n%{http_code}",
    ]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    r = subprocess.run([*args, f"http://filetwin{url}"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    text, _, code = r.stdout.rpartition("\n")
    return int(code), json.loads(text) if text else None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_curl_drives_add_write_close_history_journal_restore(daemon: Daemon, files: Path) -> None:
    f = files / "curl.bin"
    f.write_bytes(b"0123456789")
    code, added = curl(daemon, "POST", "/add", {"paths": [str(f)], "backup": "on-write"})
    assert code == 200, added
    assert added["entries"][0]["backup_mode"] == "on-write"
    assert added["failures"] == []

    # The application reports each write, then makes it (as filetwin.open does).
    seqs = []
    for offset, data in [(2, b"ab"), (12, b"XYZ"), (0, b"!")]:
        body = {"path": str(f), "offset": offset, "data": b64(data)}
        code, answer = curl(daemon, "POST", "/write", body)
        assert code == 200, answer
        seqs.append(answer["seq"])
        with f.open("r+b") as fh:
            fh.seek(offset)
            fh.write(data)
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    code, answer = curl(daemon, "POST", "/mark", {"path": str(f), "name": "consistent"})
    assert code == 200, answer
    mark_seq = answer["seq"]
    code, answer = curl(daemon, "POST", "/close", {"path": str(f), "ok": True})
    assert code == 200, answer
    close_seq = answer["seq"]
    assert close_seq > mark_seq > seqs[-1]

    code, journal = curl(daemon, "GET", f"/journal?path={f}")
    assert code == 200, journal
    assert journal["last_seq"] >= close_seq
    assert journal["writes"] >= 3
    assert {"seq": close_seq, "time": journal["closes"][-1]["time"], "ok": True} in journal[
        "closes"
    ]
    assert [m["name"] for m in journal["marks"]] == ["consistent"]

    # A good close folds the journal into a checkpoint version.
    def causes() -> list[str]:
        code, history = curl(daemon, "GET", f"/history?path={f}")
        assert code == 200, history
        return [v["cause"] for v in history]

    wait_until(lambda: "checkpoint" in causes(), what="the close's checkpoint")
    assert causes()[0] == "initial"

    out = files / "restored.bin"
    expected = {
        0: b"0123456789",
        seqs[0]: b"01ab456789",
        seqs[1]: b"01ab456789\0\0XYZ",
        seqs[2]: b"!1ab456789\0\0XYZ",
        close_seq: b"!1ab456789\0\0XYZ",
    }
    for seq, content in expected.items():
        code, answer = curl(
            daemon, "POST", "/restore", {"path": str(f), "at": f"seq:{seq}", "to": str(out)}
        )
        assert code == 200, answer
        assert answer["target"] == str(out)
        assert out.read_bytes() == content, f"seq:{seq}"
    code, answer = curl(
        daemon, "POST", "/restore", {"path": str(f), "at": "mark:consistent", "to": str(out)}
    )
    assert code == 200, answer
    assert out.read_bytes() == expected[seqs[2]]
    assert f.read_bytes() == expected[close_seq]


def test_curl_errors_are_clear_json(daemon: Daemon, files: Path) -> None:
    f = files / "plain.txt"
    f.write_text("x")
    code, _ = curl(daemon, "POST", "/add", {"paths": [str(f)]})  # on-close
    assert code == 200
    code, err = curl(daemon, "POST", "/write", {"path": str(f), "offset": 0, "data": b64(b"y")})
    assert code >= 400
    assert "on-close" in err["error"] and err["type"]
    w = files / "w.bin"
    w.write_bytes(b"w")
    assert curl(daemon, "POST", "/add", {"paths": [str(w)], "backup": "on-write"})[0] == 200
    code, err = curl(daemon, "POST", "/write", {"path": str(w), "offset": 0, "data": "not base64!"})
    assert code == 400 and "base64" in err["error"]
    code, err = curl(
        daemon, "POST", "/restore", {"path": str(w), "at": "seq:99", "to": str(files / "o")}
    )
    assert code >= 400 and "99" in err["error"]
    assert not (files / "o").exists()
