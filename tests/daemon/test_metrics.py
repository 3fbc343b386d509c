"""GET /metrics over the daemon's socket: Prometheus text whose values are what happened."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from filetwin.daemon import metrics as metrics_module
from filetwin.daemon.metrics import Metrics
from filetwin.unixsock import http_connection
from tests.helpers import Daemon, wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(d: Daemon) -> tuple[str, str]:
    """(Content-Type, body) of GET /metrics on the daemon's socket."""
    conn = http_connection(str(d.socket_path), 30)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 200, body
        return response.getheader("Content-Type") or "", body
    finally:
        conn.close()


def samples(d: Daemon) -> Samples:
    """Every sample of a scrape, parsed by prometheus_client's own parser."""
    _ctype, text = scrape(d)
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("filetwin_"), family.name
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(got: Samples, name: str, **labels: str) -> float | None:
    return got.get((name, tuple(sorted(labels.items()))))


def test_metrics_after_a_backup_and_a_retry(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    # Every job's worker sleeps 0.3 s first: jobs have a known least duration.
    d = make_daemon(worker_stall_s=0.3, retry_backoff_s=0.05, timeout_floor_s=30.0)
    f = files / "notes.txt"
    f.write_text("first draft\n")
    d.client.add(f, timeout=10)
    ctype, _ = scrape(d)
    assert ctype.startswith("text/plain")
    got = samples(d)
    path = str(f)
    assert value(got, "filetwin_jobs_total", kind="backup", result="ok") == 1
    assert value(got, "filetwin_job_duration_seconds_count", kind="backup", result="ok") == 1
    seconds = value(got, "filetwin_job_duration_seconds_sum", kind="backup", result="ok")
    assert seconds is not None and 0.3 <= seconds < 10
    assert value(got, "filetwin_recovery_point_age_seconds", path=path) == 0
    assert value(got, "filetwin_entries", state="watching") == 1
    assert value(got, "filetwin_events_total", kind="added", ok="true") == 1
    repo_bytes = value(got, "filetwin_repository_size_bytes")
    assert repo_bytes is not None and repo_bytes > len("first draft\n")

    # A deadline shorter than the worker's stall: the backup times out, is
    # retried once, times out again.
    d.client.update(f, timeout=0.1, retries=1)
    with pytest.raises(Exception, match="timeout|deadline|timed out"):
        d.client.backup(f)
    got = samples(d)
    assert value(got, "filetwin_jobs_total", kind="backup", result="timeout") == 2
    assert value(got, "filetwin_jobs_total", kind="backup", result="ok") == 1
    assert value(got, "filetwin_retries_total", path=path) == 1
    assert value(got, "filetwin_timeouts_total", path=path) == 1
    assert value(got, "filetwin_events_total", kind="retry", ok="false") == 1
    assert value(got, "filetwin_events_total", kind="timeout", ok="false") == 1
    assert value(got, "filetwin_heals_total", path=path, result="healed") is None


def test_recovery_point_age_of_a_change_not_yet_stored(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    d = make_daemon()
    f = files / "a.txt"
    f.write_text("one\n")
    d.client.add(f)
    d.client.pause(f)  # no watcher: the change below stays unstored
    row = d.client.status(f)
    assert row["last_backup_at"] is not None
    backed_up = wait_until(
        lambda: value(samples(d), "filetwin_recovery_point_age_seconds", path=str(f)) == 0,
        what="age 0 right after the first version",
    )
    assert backed_up
    from filetwin.timefmt import parse_time

    at = parse_time(row["last_backup_at"])
    f.write_text("two\n")
    os.utime(f, (at + 120, at + 120))
    got = samples(d)
    age = value(got, "filetwin_recovery_point_age_seconds", path=str(f))
    assert age is not None and abs(age - 120) < 0.01, age
    assert value(got, "filetwin_entries", state="paused") == 1


def test_journal_records_not_yet_checkpointed(
    make_daemon: Callable[..., Daemon], files: Path
) -> None:
    d = make_daemon()
    f = files / "db.bin"
    f.write_bytes(b"\0" * 4096)
    d.client.add(f, backup="on-write")
    got = samples(d)
    assert value(got, "filetwin_journal_pending_records", path=str(f)) == 0
    assert value(got, "filetwin_journal_pending_age_seconds", path=str(f)) == 0
    d.client.notify_write(f, offset=0, data=b"abc")
    d.client.notify_write(f, offset=100, data=b"defgh")
    got = samples(d)
    assert value(got, "filetwin_journal_pending_records", path=str(f)) == 2
    assert value(got, "filetwin_journal_pending_bytes", path=str(f)) == 8
    pending_age = value(got, "filetwin_journal_pending_age_seconds", path=str(f))
    assert pending_age is not None and 0 <= pending_age < 30
    # A good close folds the journal into a checkpoint: nothing pending after it.
    d.client.notify_close(f, ok=True)
    wait_until(
        lambda: value(samples(d), "filetwin_journal_pending_records", path=str(f)) == 0,
        what="the checkpoint to fold the journal",
    )


def test_metrics_refuses_query_parameters(daemon: Daemon) -> None:
    conn = http_connection(str(daemon.socket_path), 30)
    try:
        conn.request("GET", "/metrics?x=1")
        response = conn.getresponse()
        assert response.status == 400
        assert b"unknown query parameter" in response.read()
    finally:
        conn.close()


def test_repository_size_is_cached_and_refreshed_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a").write_bytes(b"x" * 100)
    m = Metrics(tmp_path / "none.sqlite", tmp_path / "journals", str(repo), lambda p: (0, 0))
    assert m.repo_size.get() == 100
    (repo / "b").write_bytes(b"y" * 50)
    assert m.repo_size.get() == 100  # cached: no walk on every scrape
    monkeypatch.setattr(metrics_module, "REPO_SIZE_REFRESH_S", 0.0)
    wait_until(lambda: m.repo_size.get() == 150, 10, "the background refresh")
    (repo / "link").symlink_to("/etc")  # never followed
    m.repo_size.value = None
    assert m.repo_size.get() == 150


def test_metrics_route_fuzzed_as_the_api_fuzzer_does(daemon: Daemon, files: Path) -> None:
    """What tests/api/test_fuzz.py asks of every route, for /metrics (whose 200 answer
    is text, which that fuzzer cannot parse yet): never a 5xx; a 200 parses as
    Prometheus text; every refusal is the JSON error shape; the daemon stays up."""
    import json

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    f = files / "x.txt"
    f.write_text("x\n")
    daemon.client.add(f)

    def raw(method: str, url: str, body: bytes | None) -> tuple[int, str, bytes]:
        conn = http_connection(str(daemon.socket_path), 30)
        try:
            conn.putrequest(method, url, skip_accept_encoding=True)
            if body is not None:
                conn.putheader("Content-Type", "application/json")
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            return response.status, response.getheader("Content-Type") or "", response.read()
        finally:
            conn.close()

    query = st.one_of(
        st.just(""),
        st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=20).map(
            lambda t: "?" + t.replace("#", "")
        ),
        st.binary(max_size=20).map(lambda b: "?p=" + "".join(f"%{c:02x}" for c in b)),
    )

    @settings(
        max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(
        st.sampled_from(["GET", "GET", "POST", "PUT", "DELETE", "HEAD"]),
        query,
        st.one_of(st.none(), st.binary(max_size=50), st.just(b'{"path": "/"}')),
    )
    def one(method: str, q: str, body: bytes | None) -> None:
        status, ctype, raw_body = raw(method, "/metrics" + q, body)
        seen.add(status)
        assert status < 500, (method, q, status, raw_body[:200])
        if status == 200 and method == "GET":
            assert ctype.startswith("text/plain")
            names = [fam.name for fam in text_string_to_metric_families(raw_body.decode())]
            assert "filetwin_recovery_point_age_seconds" in names
        elif status >= 400 and method != "HEAD":
            answer = json.loads(raw_body)
            assert set(answer) == {"error", "type", "exit_code"}, answer

    seen: set[int] = set()
    one()
    assert 200 in seen and any(400 <= s < 500 for s in seen), seen
    assert daemon.client.ping()
    assert "Traceback" not in daemon.log()
