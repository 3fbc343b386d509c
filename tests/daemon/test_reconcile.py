"""Files named in the config (issue 13, point 2): ``[[protect]]`` tables reconciled
at start, by ``filetwin reload`` and on SIGHUP, with a real daemon."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

from tests.helpers import Daemon, wait_until


def protect(daemon: Daemon, *tables: str) -> None:
    """The daemon's config file: ``tables`` as [[protect]] tables (TOML bodies)."""
    daemon.config_path.write_text("".join(f"[[protect]]\n{t}\n" for t in tables))


def by_path(daemon: Daemon) -> dict[str, dict[str, object]]:
    return {r["path"]: r for r in daemon.client.status()}


def test_start_adds_config_entries_marked_as_config(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    (files / "a.db").write_bytes(b"a")
    (files / "b.db").write_bytes(b"b")
    (files / "c.txt").write_bytes(b"c")
    d = make_daemon()
    protect(d, f'path = "{files}/*.db"\nrecovery = "auto"\nkeep = 7')
    d.restart()
    rows = wait_until(lambda: len(by_path(d)) == 2 and by_path(d), what="two config entries")
    assert sorted(rows) == [str(files / "a.db"), str(files / "b.db")]
    for row in rows.values():
        assert (row["source"], row["recovery_mode"], row["keep"]) == ("config", "auto", 7)
        assert row["backup_mode"] == "on-close" and row["retries"] == 3  # add's defaults
    wait_until(lambda: all(r["versions"] == 1 for r in by_path(d).values()), what="versions")
    text = d.cli("status")
    assert text.returncode == 0
    assert all("config" in ln for ln in text.stdout.splitlines() if "a.db" in ln or "b.db" in ln)


def test_reload_adds_updates_removes_and_never_touches_cli_entries(
    daemon: Daemon, files: Path
) -> None:
    for name in ("keep.db", "change.db", "drop.db", "hand.db", "new.db"):
        (files / name).write_bytes(name.encode())
    assert daemon.cli("add", str(files / "hand.db"), "--keep", "3").returncode == 0
    protect(
        daemon,
        f'path = "{files}/keep.db"',
        f'path = "{files}/change.db"',
        f'path = "{files}/drop.db"',
        f'path = "{files}/hand.db"\nkeep = 9',
    )
    r = daemon.cli("reload", "--json")
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert sorted(first["added"]) == sorted(
        str(files / n) for n in ("keep.db", "change.db", "drop.db")
    )
    assert any("hand.db" in n and "command line" in n for n in first["notes"])
    versions_before = daemon.client.history(files / "drop.db")

    protect(
        daemon,
        f'path = "{files}/keep.db"',
        f'path = "{files}/change.db"\nbackup = "on-write"\nkeep = 4',
        f'path = "{files}/new.db"',
        f'path = "{files}/hand.db"\nkeep = 9',
    )
    r = daemon.cli("reload")
    assert r.returncode == 0, r.stderr
    assert "1 added, 1 updated, 1 removed, 2 unchanged" in r.stdout, r.stdout
    rows = by_path(daemon)
    assert str(files / "drop.db") not in rows
    assert rows[str(files / "new.db")]["source"] == "config"
    changed = rows[str(files / "change.db")]
    assert (changed["backup_mode"], changed["keep"]) == ("on-write", 4)
    hand = rows[str(files / "hand.db")]
    assert (hand["source"], hand["keep"]) == ("cli", 3)  # the hand-made entry wins
    # Removed, not purged: its history is still there.
    assert daemon.client.history(files / "drop.db") == versions_before

    # An empty config removes every config entry and no CLI entry.
    daemon.config_path.write_text("")
    assert daemon.cli("reload").returncode == 0
    assert list(by_path(daemon)) == [str(files / "hand.db")]


def test_a_bad_table_changes_nothing_and_names_its_line(daemon: Daemon, files: Path) -> None:
    (files / "a.db").write_bytes(b"a")
    (files / "b.db").write_bytes(b"b")
    protect(daemon, f'path = "{files}/a.db"')
    assert daemon.cli("reload").returncode == 0
    before = by_path(daemon)
    # Line 4 holds a relative path, line 7's table a bad policy value.
    daemon.config_path.write_text(
        f'[[protect]]\npath = "{files}/b.db"\n[[protect]]\npath = "relative/c.db"\n'
    )
    r = daemon.cli("reload")
    assert r.returncode == 1
    assert "line 4" in r.stderr and "not an absolute path" in r.stderr, r.stderr
    assert "nothing was changed" in r.stderr
    daemon.config_path.write_text(
        f'[[protect]]\npath = "{files}/b.db"\n\n\n\n[[protect]]\npath = "{files}/a.db"\n'
        'recovery = "sometimes"\n'
    )
    r = daemon.cli("reload")
    assert r.returncode == 1
    assert "line 7" in r.stderr and "recovery mode must be one of" in r.stderr, r.stderr
    assert by_path(daemon).keys() == before.keys()  # b.db was not added, a.db kept
    assert daemon.cli("status").returncode == 0


def test_a_glob_matching_nothing_is_reported_not_an_error(daemon: Daemon, files: Path) -> None:
    protect(daemon, f'path = "{files}/*.nothing"')
    r = daemon.cli("reload")
    assert r.returncode == 0, r.stderr
    assert "matches no file" in r.stdout and "line 2" in r.stdout, r.stdout
    # A file that appears later under the glob is protected at the next reload.
    (files / "late.nothing").write_bytes(b"late")
    r = daemon.cli("reload", "--json")
    assert json.loads(r.stdout)["added"] == [str(files / "late.nothing")]


def test_sighup_reloads(daemon: Daemon, files: Path) -> None:
    (files / "a.db").write_bytes(b"a")
    protect(daemon, f'path = "{files}/a.db"')
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: str(files / "a.db") in by_path(daemon), what="the entry SIGHUP adds")
    assert by_path(daemon)[str(files / "a.db")]["source"] == "config"
    wait_until(
        lambda: any(
            e["kind"] == "reload" and "1 added" in e["message"]
            for e in daemon.client.request("GET", "/events")
        ),
        what="the reload event",
    )


def test_reload_without_a_daemon_exits_3(tmp_path: Path) -> None:
    from tests.helpers import run_cli

    r = run_cli("--state-dir", str(tmp_path / "none"), "reload")
    assert r.returncode == 3, r.stderr
