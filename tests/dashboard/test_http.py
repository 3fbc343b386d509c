"""The dashboard over plain HTTP: its gate (token, Host, CSRF, Origin), pages, actions."""

from __future__ import annotations

import html
import json
import os
import re
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlencode

from tests.dashboard.conftest import DashDaemon
from tests.helpers import run_cli, wait_until


def protect(dash: DashDaemon, files: Path, name: str = "doc.txt") -> tuple[str, list[str]]:
    """A protected file with two versions (b"one\\n", then b"two\\n"); their ids."""
    f = files / name
    f.write_bytes(b"one\n")
    dash.client.add(f)
    f.write_bytes(b"two\n")
    dash.client.backup(f)
    return str(f), [v["id"] for v in dash.client.history(f)]


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page)
    assert found, page[:500]
    return found.group(1)


def test_refused_without_the_token(dash: DashDaemon) -> None:
    for target in ("/", "/rows", "/file?path=/etc/passwd", "/events/stream", "/metrics"):
        status, _h, body = dash.get(target)
        assert status == 401, target
        assert "filetwin dashboard" in body
        assert "/etc/passwd" not in body
    status, _h, _b = dash.get("/", {"Cookie": f"filetwin_token_{dash.port}=not-the-token"})
    assert status == 401
    status, _h, body = dash.get("/?token=not-the-token")
    assert status == 403 and "not the dashboard" in body


def test_foreign_host_refused_even_with_the_token(dash: DashDaemon) -> None:
    """DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1."""
    for host in (f"evil.example:{dash.port}", "127.0.0.1", f"127.0.0.1:{dash.port + 1}", ""):
        status, headers, body = dash.get(f"/?token={dash.token}", {"Host": host})
        assert status == 403, host
        assert "set-cookie" not in headers
        status, _h, _b = dash.get("/", {"Host": host, "Cookie": dash.cookies()})
        assert status == 403, host
        status, _h, _b = dash.get(
            "/metrics", {"Host": host, "Authorization": f"Bearer {dash.token}"}
        )
        assert status == 403, host
    status, _h, _b = dash.get("/", {"Host": f"LOCALHOST:{dash.port}", "Cookie": dash.cookies()})
    assert status == 200


def test_login_moves_the_token_into_a_strict_cookie(dash: DashDaemon) -> None:
    status, headers, _b = dash.get(f"/file?path=%2Fx&token={dash.token}")
    assert status == 303
    assert headers["location"] == "/file?path=%2Fx"  # the token is gone from the URL
    cookies = headers["set-cookie"].split("\n")
    token_cookie = next(c for c in cookies if c.startswith(f"filetwin_token_{dash.port}="))
    assert dash.token in token_cookie
    for cookie in cookies:
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    status, headers, body = dash.get("/", {"Cookie": dash.cookies()})
    assert status == 200 and "The management table" in body
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"


def test_token_file_is_private_and_stable(make_dash: Callable[..., DashDaemon]) -> None:
    dash = make_dash()
    token_file = dash.state_dir / "dashboard.token"
    st = token_file.lstat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    first = dash.token
    assert len(first) >= 40
    dash.restart()
    wait_until(dash.serving, 15, "the dashboard to listen again")
    assert dash.token == first
    status, _h, _b = dash.get("/", {"Cookie": dash.cookies()})
    assert status == 200  # a browser's cookie outlives the restart
    dash.stop()
    token_file.unlink()
    dash.start()
    wait_until(dash.serving, 15, "the dashboard to listen again")
    assert dash.token != first
    status, _h, _b = dash.get(f"/?token={first}")
    assert status == 403


def test_token_file_readable_by_others_is_refused(make_dash: Callable[..., DashDaemon]) -> None:
    dash = make_dash(start=False)
    dash.state_dir.mkdir(mode=0o700)
    (dash.state_dir / "dashboard.token").write_text("x" * 43 + "\n")
    os.chmod(dash.state_dir / "dashboard.token", 0o644)
    dash.start()
    events = wait_until(
        lambda: [e for e in dash.client.events() if e["kind"] == "dashboard-failed"],
        what="the dashboard-failed event",
    )
    assert "may be read by others" in events[0]["message"]
    assert not dash.serving()
    dash.client.ping()  # the daemon still protects files
    result = dash.cli("--config", str(dash.config_path), "dashboard", "--no-check")
    assert result.returncode == 1 and "may be read by others" in result.stderr


def test_post_needs_csrf_and_origin(dash: DashDaemon, files: Path) -> None:
    path, _ids = protect(dash, files)
    _s, _h, page = dash.get("/", {"Cookie": dash.cookies()})
    csrf = csrf_of(page)
    origin = f"http://127.0.0.1:{dash.port}"
    form = f"qpath={quote(path)}"
    cases = [
        ({"Origin": origin}, form),  # no CSRF token
        ({"Origin": origin}, form + "&csrf=" + "0" * 64),  # a wrong one
        ({"Origin": "http://evil.example"}, form + f"&csrf={csrf}"),
        ({"Origin": "null"}, form + f"&csrf={csrf}"),
        ({}, form + f"&csrf={csrf}"),  # neither Origin nor Referer
        ({"Referer": "http://evil.example/page"}, form + f"&csrf={csrf}"),
    ]
    for extra, body in cases:
        status, _h, _b = dash.get(
            "/action/pause", {"Cookie": dash.cookies(), **extra}, method="POST", body=body
        )
        assert status == 403, (extra, body)
    # Another session's CSRF token does not fit this session.
    status, _h, _b = dash.get(
        "/action/pause",
        {"Cookie": dash.cookies("other-session"), "Origin": origin},
        method="POST",
        body=form + f"&csrf={csrf}",
    )
    assert status == 403
    assert dash.client.status(path)["state"] == "watching"  # nothing happened
    status, headers, _b = dash.get(
        "/action/pause",
        {"Cookie": dash.cookies(), "Referer": f"{origin}/file"},
        method="POST",
        body=form + f"&csrf={csrf}",
    )
    assert status == 303 and headers["location"].startswith("/file?path=")
    assert dash.client.status(path)["state"] == "paused"


def test_restore_in_place_through_the_engine(dash: DashDaemon, files: Path) -> None:
    path, ids = protect(dash, files)
    first = ids[0]  # b"one\n"
    Path(path).write_bytes(b"three\n")
    cookies = {"Cookie": dash.cookies()}
    q = urlencode({"path": path, "version": first, "where": "in-place"})
    status, _h, page = dash.get(f"/restore?{q}", cookies)
    assert status == 200
    assert "Kept aside" in page and "cause <code>restore</code>" in page
    assert Path(path).read_bytes() == b"three\n"  # the confirmation changes nothing
    status, headers, _b = dash.get(
        "/action/restore",
        {**cookies, "Origin": f"http://127.0.0.1:{dash.port}"},
        method="POST",
        body=urlencode({"csrf": csrf_of(page), "qpath": path, "version": first}),
    )
    assert status == 303
    assert Path(path).read_bytes() == b"one\n"
    history = dash.client.history(path)
    kept = [v for v in history if v["cause"] == "restore"]
    assert len(kept) == 1 and kept[0]["size"] == len(b"three\n")
    restores = [e for e in dash.client.events(path) if e["kind"] == "restore"]
    assert len(restores) == 1 and first in restores[0]["message"]
    # The message waits on the file's page, once.
    _s, _h, page = dash.get(headers["location"], cookies)
    assert f"restored version {first}" in page and kept[0]["id"] in page
    _s, _h, page = dash.get(headers["location"], cookies)
    assert f"restored version {first}" not in page.split('<ol class="timeline">')[0]


def test_restore_to_a_new_path_and_bad_input(dash: DashDaemon, files: Path, tmp_path: Path) -> None:
    path, ids = protect(dash, files)
    first = ids[0]  # b"one\n"
    cookies = {"Cookie": dash.cookies()}
    _s, _h, page = dash.get("/", cookies)
    post = {**cookies, "Origin": f"http://127.0.0.1:{dash.port}"}
    dest = tmp_path / "copy.txt"
    status, _h, _b = dash.get(
        "/action/restore",
        post,
        "POST",
        urlencode({"csrf": csrf_of(page), "qpath": path, "version": first, "to": str(dest)}),
    )
    assert status == 303
    assert dest.read_bytes() == b"one\n" and Path(path).read_bytes() == b"two\n"
    q = urlencode({"path": path, "version": first, "where": "to", "to": str(dest)})
    _s, _h, confirm = dash.get(f"/restore?{q}", cookies)
    assert "Not kept" in confirm
    # Bad input: a clear message, nothing changed.
    status, _h, body = dash.get(f"/restore?{urlencode({'path': path, 'to': 'relative'})}", cookies)
    assert status == 400 and "destination" in body
    status, _h, body = dash.get(
        f"/restore?{urlencode({'path': path, 'version': first, 'at': 'seq:1'})}", cookies
    )
    assert status == 400 and "not both" in body
    status, _h, body = dash.get("/file?path=/nowhere/at/all", cookies)
    assert status == 404 and "not protected" in body
    status, _h, body = dash.get("/?page=x", cookies)
    assert status == 400 and "page" in body
    status, headers, _b = dash.get(
        "/action/restore",
        post,
        "POST",
        urlencode({"csrf": csrf_of(page), "qpath": path, "version": "ffffffff"}),
    )
    assert status == 303
    _s, _h, page = dash.get(headers["location"], cookies)
    assert 'class="flash err"' in page
    assert Path(path).read_bytes() == b"two\n"


def test_recover_of_a_manual_entry_is_refused_with_its_reason(
    dash: DashDaemon, files: Path
) -> None:
    path, _ids = protect(dash, files)
    cookies = {"Cookie": dash.cookies()}
    _s, _h, page = dash.get("/", cookies)
    status, headers, _b = dash.get(
        "/action/recover",
        {**cookies, "Origin": f"http://127.0.0.1:{dash.port}"},
        "POST",
        urlencode({"csrf": csrf_of(page), "qpath": path}),
    )
    assert status == 303
    _s, _h, page = dash.get(headers["location"], cookies)
    assert 'class="flash err"' in page and "manual" in page
    assert any(e["kind"] == "heal-refused" for e in dash.client.events(path))


def test_table_pages_and_filters(make_dash: Callable[..., DashDaemon]) -> None:
    dash = make_dash(start=False)
    dash.start()
    dash.stop()
    # Synthetic paused rows (not watched): the table's size is what is tested.
    db = sqlite3.connect(dash.state_dir / "table.sqlite")
    db.executemany(
        "INSERT INTO entries (path, backup_mode, recovery_mode, retries, keep, repository,"
        " state, created_at) VALUES (?, 'on-close', 'manual', 3, 50, 'x', 'paused', ?)",
        ((f"/synthetic/{'odd' if i % 2 else 'even'}/f{i:04d}", time.time()) for i in range(250)),
    )
    db.commit()
    db.close()
    dash.start()
    wait_until(dash.serving, 15, "the dashboard to listen")
    cookies = {"Cookie": dash.cookies()}
    _s, _h, page = dash.get("/", cookies)
    assert page.count("<tr class=") == 100
    assert "entries 1–100 of 250 matching" in page and "page 1 of 3" in page
    _s, _h, page = dash.get("/?page=3", cookies)
    assert page.count("<tr class=") == 50 and "/synthetic/odd/f0249" in page
    _s, _h, page = dash.get("/?page=99", cookies)  # past the end: the last page
    assert "page 3 of 3" in page
    _s, _h, page = dash.get("/?filter=odd&state=paused", cookies)
    assert "of 125 matching" in page and "/synthetic/even/" not in page
    _s, _h, page = dash.get("/?state=missing", cookies)
    assert "no entry matches" in page
    status, _h, raw = dash.get("/rows?filter=f0001", cookies)
    assert status == 200 and "/synthetic/odd/f0001" in raw and "f0002" not in raw


def test_metrics_with_the_token(dash: DashDaemon, files: Path) -> None:
    protect(dash, files)
    status, headers, body = dash.get("/metrics", {"Authorization": f"Bearer {dash.token}"})
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert "filetwin_jobs_total" in body and str(files / "doc.txt") in body
    status, headers, body = dash.get(f"/metrics?token={dash.token}")
    assert status == 200 and "filetwin_jobs_total" in body and "set-cookie" not in headers
    status, _h, _b = dash.get("/metrics", {"Authorization": "Bearer nope"})
    assert status == 401


def test_cli_prints_the_ready_url(dash: DashDaemon) -> None:
    result = dash.cli("--config", str(dash.config_path), "dashboard")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"http://127.0.0.1:{dash.port}/?token={dash.token}"
    result = dash.cli("--config", str(dash.config_path), "dashboard", "--json")
    assert json.loads(result.stdout) == {
        "url": f"http://127.0.0.1:{dash.port}/?token={dash.token}",
        "port": dash.port,
        "token": dash.token,
    }


def test_cli_when_disabled_or_not_served(make_dash: Callable[..., DashDaemon]) -> None:
    off = make_dash("off", enabled=False)
    assert not off.serving()
    assert not (off.state_dir / "dashboard.token").exists()
    result = off.cli("--config", str(off.config_path), "dashboard")
    assert result.returncode == 1
    assert "not enabled" in result.stderr and "enabled = true" in result.stderr
    assert result.stdout == ""
    stopped = make_dash("stopped", start=False)
    result = stopped.cli("--config", str(stopped.config_path), "dashboard")
    assert result.returncode == 3 and "does not answer" in result.stderr
    assert result.stdout == ""
    plain = run_cli("dashboard", "--help")
    assert "enabled = true" in plain.stdout


def test_a_name_that_is_not_utf8(dash: DashDaemon, files: Path) -> None:
    """Links and forms carry the name's bytes: the restore reaches the same file."""
    f = os.fsdecode(os.path.join(os.fsencode(files), b"caf\xe9.txt"))
    with open(os.fsencode(f), "wb") as fh:
        fh.write(b"one\n")
    dash.client.add(os.fsencode(f))
    with open(os.fsencode(f), "wb") as fh:
        fh.write(b"two\n")
    cookies = {"Cookie": dash.cookies()}
    status, _h, page = dash.get("/", cookies)
    assert status == 200 and "caf\ufffd.txt" in page
    link = re.search(r'href="(/file\?path=[^"]+)"', page)
    assert link and "caf%E9.txt" in link.group(1)
    status, _h, page = dash.get(html.unescape(link.group(1)), cookies)
    assert status == 200
    ask = re.search(r'href="(/restore\?[^"]+)"', page)
    assert ask
    status, _h, confirm = dash.get(html.unescape(ask.group(1)), cookies)
    assert status == 200 and "Kept aside" in confirm
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', confirm))
    status, _h, _b = dash.get(
        "/action/restore",
        {**cookies, "Origin": f"http://127.0.0.1:{dash.port}"},
        "POST",
        urlencode({k: html.unescape(v) for k, v in fields.items()}),
    )
    assert status == 303
    wait_until(
        lambda: any(e["kind"] == "restore" for e in dash.client.events(os.fsencode(f))),
        what="the restore event",
    )
