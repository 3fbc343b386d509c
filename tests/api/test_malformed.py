"""Malformed requests on every route are clear 4xx JSON errors, never a 500.

Each case was a 500 (or a wedged event loop) before: a 1 MB path held
``/health`` for half a minute (``os.path.realpath`` on the loop), 100k-deep
JSON raised RecursionError, ``events?after=`` past 64 bits overflowed SQLite,
a NUL in a path reached ``os.stat``, ``at=-1e20`` overflowed ``gmtime``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from tests.api.rawhttp import assert_error, raw_request
from tests.helpers import Daemon


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("malformed")
    d = Daemon(root / "state").start()
    existing = root / "existing.txt"
    existing.write_text("protected\n")
    d.client.add(existing)
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def existing(shared: Daemon) -> str:
    return str(shared.state_dir.parent / "existing.txt")


BODY_PATH_ROUTES = [
    "/backup", "/pause", "/resume", "/remove", "/update", "/restore",
    "/write", "/truncate", "/close", "/mark", "/recover", "/verify",
]  # fmt: skip
QUERY_PATH_ROUTES = ["/status", "/history", "/journal", "/events"]


def no_traceback_since(d: Daemon, offset: int) -> None:
    assert "Traceback" not in d.log()[offset:], d.log()[offset:][-3000:]


@pytest.mark.parametrize("route", BODY_PATH_ROUTES + ["/add"])
def test_a_1mb_path_is_refused_at_once_and_health_answers(shared: Daemon, route: str) -> None:
    # "/x/x/x/...": 500k components, the shape that made realpath take half a minute.
    long_path = "/tmp/nonexistent-dir/" + "x/" * 500_000
    payload = {"paths": [long_path]} if route == "/add" else {"path": long_path}
    answers: dict[str, Any] = {}

    def send() -> None:
        start = time.monotonic()
        answers["long"] = raw_request(shared.socket_path, "POST", route, json.dumps(payload))
        answers["long_s"] = time.monotonic() - start

    t = threading.Thread(target=send)
    t.start()
    start = time.monotonic()
    status, health = raw_request(shared.socket_path, "GET", "/health", timeout=10)
    health_s = time.monotonic() - start
    t.join(60)
    assert status == 200 and health["ok"]
    assert health_s < 2.0, f"/health took {health_s:.1f} s while a long path was checked"
    assert_error(answers["long"], 400, "PATH_MAX", "4096")
    assert answers["long_s"] < 5.0, answers["long_s"]


@pytest.mark.parametrize("route", QUERY_PATH_ROUTES)
def test_a_long_path_in_a_query_is_refused(shared: Daemon, route: str) -> None:
    # Request lines stop at 8190 bytes in the HTTP layer; this path is past PATH_MAX.
    long_path = "/tmp/nonexistent-dir/" + "x/" * 3_000
    start = time.monotonic()
    answer = raw_request(shared.socket_path, "GET", f"{route}?path={quote(long_path)}")
    assert_error(answer, 400, "PATH_MAX")
    assert time.monotonic() - start < 5.0


def test_a_long_component_names_name_max(shared: Daemon) -> None:
    answer = raw_request(
        shared.socket_path, "POST", "/backup", json.dumps({"path": "/tmp/" + "n" * 256})
    )
    assert_error(answer, 400, "NAME_MAX", "255")


@pytest.mark.parametrize("route", BODY_PATH_ROUTES)
def test_a_nul_in_a_body_path(shared: Daemon, existing: str, route: str) -> None:
    answer = raw_request(shared.socket_path, "POST", route, json.dumps({"path": existing + "\0x"}))
    assert_error(answer, 400, "NUL")


def test_a_nul_in_paths_to_add(shared: Daemon, existing: str) -> None:
    answer = raw_request(shared.socket_path, "POST", "/add", json.dumps({"paths": ["/tmp/a\0b"]}))
    assert_error(answer, 400, "NUL")


@pytest.mark.parametrize("route", QUERY_PATH_ROUTES)
def test_a_nul_in_a_query_path(shared: Daemon, existing: str, route: str) -> None:
    answer = raw_request(shared.socket_path, "GET", f"{route}?path={quote(existing)}%00x")
    assert_error(answer, 400, "NUL")


@pytest.mark.parametrize("route", BODY_PATH_ROUTES + ["/add"])
def test_deeply_nested_json(shared: Daemon, route: str) -> None:
    offset = len(shared.log())
    deep = "[" * 100_000 + "]" * 100_000
    assert_error(raw_request(shared.socket_path, "POST", route, deep), 400, "nested too deeply")
    deep_object = '{"path": ' * 100_000 + "1" + "}" * 100_000
    answer = raw_request(shared.socket_path, "POST", route, deep_object)
    assert_error(answer, 400, "nested too deeply")
    no_traceback_since(shared, offset)


@pytest.mark.parametrize(
    "query",
    [
        "after=99999999999999999999999",
        "after=9223372036854775808",
        "after=-1",
        "after=1e3",
        "after=%C3%A9",
        "limit=99999999999999999999999",
        "limit=-5",
        "after=" + "9" * 5000,
        "follow=maybe",
        "colour=blue",
    ],
)
def test_events_query_out_of_range(shared: Daemon, query: str) -> None:
    answer = raw_request(shared.socket_path, "GET", f"/events?{query}")
    assert_error(answer, 400)


def test_events_after_the_largest_integer_is_empty(shared: Daemon) -> None:
    status, answer = raw_request(shared.socket_path, "GET", "/events?after=9223372036854775807")
    assert status == 200 and answer == []


@pytest.mark.parametrize(
    "at",
    ["-1e20", "1e20", "-1", "NaN", "Infinity", "-Infinity", "1e400", '"-1e20"', '"1e300"',
     '"inf"', '"nan"', '"0001-01-01T00:00:00-12:00"', "true", "[1]", '{"a": 1}'],
)  # fmt: skip
def test_restore_at_out_of_range(shared: Daemon, existing: str, at: str) -> None:
    offset = len(shared.log())
    dest = shared.state_dir.parent / "never-written"
    body = f'{{"path": {json.dumps(existing)}, "at": {at}, "to": {json.dumps(str(dest))}}}'
    answer = raw_request(shared.socket_path, "POST", "/restore", body)
    assert_error(answer, 400)
    assert not dest.exists()
    no_traceback_since(shared, offset)


@pytest.mark.parametrize(
    ("route", "payload"),
    [
        ("/write", {"offset": 2**63, "data": ""}),
        ("/write", {"offset": -1, "data": ""}),
        ("/write", {"offset": 10**30, "data": "AAAA"}),
        ("/write", {"offset": 0, "data": "!!"}),
        ("/truncate", {"length": 2**64}),
        ("/truncate", {"length": -1}),
        ("/truncate", {"length": 1.5}),
        ("/mark", {"name": "\udce9"}),
        ("/mark", {"name": "m" * 5000}),
        ("/recover", {"reason": "\ud800"}),
        ("/update", {"keep": 2**70}),
        ("/update", {"retries": -(2**70)}),
        ("/update", {"timeout": 10**400}),
        ("/restore", {"version": "\ud800"}),
        ("/restore", {"to": "relative/x"}),
        ("/restore", {"to": "/tmp/a\0b"}),
        ("/remove", {"purge": "yes"}),
        ("/close", {"ok": 1}),
        ("/pause", {"colour": "blue"}),
    ],
)
def test_fields_out_of_range(
    shared: Daemon, existing: str, route: str, payload: dict[str, Any]
) -> None:
    offset = len(shared.log())
    body = json.dumps({"path": existing, **payload})
    answer = raw_request(shared.socket_path, "POST", route, body)
    assert_error(answer, 400)
    no_traceback_since(shared, offset)


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe\x00", b"{", b"[]", b"1", b'"x"', b"null", b"{}garbage", b'{"path": NaN}'],
)
@pytest.mark.parametrize("route", ["/backup", "/add", "/restore", "/write"])
def test_bodies_that_are_not_objects(shared: Daemon, route: str, body: bytes) -> None:
    answer = raw_request(shared.socket_path, "POST", route, body)
    assert_error(answer, 400)


def test_unknown_route_and_method_are_json(shared: Daemon) -> None:
    assert_error(raw_request(shared.socket_path, "GET", "/nope"), 404, "no such endpoint")
    assert_error(raw_request(shared.socket_path, "DELETE", "/status"), 405)
    assert_error(raw_request(shared.socket_path, "GET", "/backup"), 405)


def test_a_body_over_the_limit_is_json(shared: Daemon) -> None:
    answer = raw_request(shared.socket_path, "POST", "/mark", b"{" + b" " * (65 << 20) + b"}")
    assert_error(answer, 413)
