"""File names that are not UTF-8: carried as surrogate escapes end to end.

A name is bytes; b"caf\\xe9.txt" travels as the JSON string "caf\\udce9.txt"
(Python's 'surrogateescape', what ``os.fsdecode`` gives) and as %E9 in a
query string. Before, the client could not even build the query
(UnicodeEncodeError in urlencode) and the daemon answered a plain-text 500.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

from tests.api.rawhttp import ERROR_KEYS, raw_request
from tests.helpers import Daemon

NAME = b"caf\xe9.txt"


def make(files: Path, content: bytes) -> str:
    path = os.path.join(os.fsencode(files), NAME)
    with open(path, "wb") as f:
        f.write(content)
    return os.fsdecode(path)


def test_non_utf8_names_never_make_a_500(daemon: Daemon, files: Path) -> None:
    path = make(files, b"bytes in a latin-1 name\n")
    encoded = quote(os.fsencode(path), safe="")
    for route in ("/status", "/history", "/journal", "/events"):
        status, answer = raw_request(daemon.socket_path, "GET", f"{route}?path={encoded}")
        assert status < 500, (route, status, answer)
        assert status == 200 or set(answer) == ERROR_KEYS, (route, answer)
    for route in ("/add", "/backup", "/pause", "/restore", "/mark", "/recover", "/verify"):
        payload = {"paths": [path]} if route == "/add" else {"path": path}
        status, answer = raw_request(daemon.socket_path, "POST", route, json.dumps(payload))
        assert status < 500, (route, status, answer)
        assert status == 200 or set(answer) == ERROR_KEYS, (route, answer)
    assert "Traceback" not in daemon.log(), daemon.log()[-3000:]


def test_non_utf8_name_add_history_restore_through_the_cli(daemon: Daemon, files: Path) -> None:
    path = make(files, b"first\n")
    added = daemon.cli("add", path)
    assert added.returncode == 0, added.stderr
    with open(os.fsencode(path), "wb") as f:
        f.write(b"second\n")
    backup = daemon.cli("backup", path)
    assert backup.returncode == 0, backup.stderr
    history = daemon.cli("history", path, "--json")
    assert history.returncode == 0, history.stderr
    versions = json.loads(history.stdout)
    sizes = [v["size"] for v in versions]
    # the close of the second write is versioned too, before or after `backup`
    assert sizes[0] == 6 and set(sizes[1:]) == {7}, sizes
    assert os.fsencode(versions[0]["path"]) == os.fsencode(path)
    dest = os.fsdecode(os.path.join(os.fsencode(files), b"restored-" + NAME))
    restored = daemon.cli("restore", path, "--version", versions[0]["id"], "--to", dest)
    assert restored.returncode == 0, restored.stderr
    with open(os.fsencode(dest), "rb") as f:
        assert f.read() == b"first\n"
    listing = os.listdir(os.fsencode(files))
    assert NAME in listing and b"restored-" + NAME in listing
