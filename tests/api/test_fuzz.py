"""Property-based fuzzing of every route the OpenAPI document lists.

Hypothesis draws a route from ``/openapi.json`` and a request for it: JSON
bodies built from the route's schema (declared fields with values of every
JSON type, the entries' real paths, hostile strings) plus unknown fields,
raw bytes that are no JSON, and query strings with declared and unknown
parameters. Against a real daemon over its Unix socket, every answer must be
JSON (``/metrics``: Prometheus text, as declared), never a 5xx, always the
error shape on 4xx and the route's declared answer shape (filetwin.shapes)
on success; afterwards the daemon is up, ``/health`` answers and its log
holds no traceback.

``FILETWIN_FUZZ_EXAMPLES`` sets the number of requests (default 250, about
20 s; a long run: ``FILETWIN_FUZZ_EXAMPLES=20000``).
"""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filetwin import shapes
from filetwin.daemon.openapi import OPENAPI
from tests.api.rawhttp import ERROR_KEYS, raw_request
from tests.helpers import Daemon

EXAMPLES = int(os.environ.get("FILETWIN_FUZZ_EXAMPLES", "250"))
ROUTES = sorted(
    (method.upper(), route, op)
    for route, item in OPENAPI["paths"].items()
    for method, op in item.items()
    if not (route == "/events" and method == "get")  # follow streams: drawn apart below
) + [("GET", "/events", OPENAPI["paths"]["/events"]["get"])]


class World:
    """The fuzzed daemon and the real paths it knows."""

    def __init__(self, d: Daemon, root: Path) -> None:
        self.d = d
        self.root = root
        self.on_close = root / "on-close.txt"
        self.on_write = root / "on-write.bin"
        self.spare = root / "spare.txt"
        self.dest = root / "restored"

    def reset(self) -> None:
        """Entries back in place (a fuzzed /remove may have taken them away)."""
        for path, mode in ((self.on_close, "on-close"), (self.on_write, "on-write")):
            if not path.exists():
                path.write_bytes(b"content\n")
            if not any(e["path"] == str(path) for e in self.d.client.status()):
                self.d.client.add(path, backup=mode)
            entry = self.d.client.status(path)
            if entry["state"] == "paused":
                self.d.client.resume(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("fuzz")
    d = Daemon(root / "state").start()
    w = World(d, root)
    (root / "restored").mkdir()
    w.spare.write_text("spare\n")
    w.reset()
    try:
        yield w
    finally:
        d.stop()


def hostile_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=40),
        st.sampled_from(
            [
                "",
                "\0",
                "/a\0b",
                "relative/path",
                ".",
                "/",
                "//..//",
                "/proc/self/fd/0",
                "/dev/null",
                "/" + "x" * 300,
                "/x" * 3000,
                "\udce9",
                "\ud800",
                "seq:",
                "seq:99999999999999999999999",
                "seq:-1",
                "mark:",
                "-1e20",
                "1e400",
                "nan",
                "inf",
                "2026-13-45T99:99:99Z",
                "0001-01-01T00:00:00-12:00",
                "%s%n",
                "0" * 5000,
            ]
        ),
    )


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**62, max_value=2**80),
    st.integers(min_value=-(2**80), max_value=-(2**62)),
    st.floats(allow_nan=False, allow_infinity=False),
    hostile_text(),
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=8), inner, max_size=3
    ), max_leaves=8
)  # fmt: skip


@st.composite
def path_value(draw: st.DrawFn, w: World) -> Any:
    real = st.sampled_from(
        [str(w.on_close), str(w.on_write), str(w.spare), str(w.root / "missing.txt")]
    )
    return draw(st.one_of(real, real, hostile_text(), json_values))


@st.composite
def field_value(draw: st.DrawFn, w: World, name: str, schema: dict[str, Any]) -> Any:
    """Mostly a plausible value (so requests reach the engine), else anything."""
    if name == "path":
        return draw(path_value(w))
    if name == "paths":
        return draw(st.one_of(st.lists(path_value(w), min_size=1, max_size=3), json_values))
    if name == "to":
        # Only ever somewhere under the test's directory, or not a path at all.
        inside = st.builds(lambda n: str(w.dest / n), st.sampled_from(["a", "b", "c.txt"]))
        return draw(st.one_of(inside, st.sampled_from(["rel/x", "", "/a\0b", 3, None])))
    plausible: st.SearchStrategy[Any]
    # An optional field is anyOf [its schema, null]: draw from its schema.
    schema = next((s for s in schema.get("anyOf", ()) if s.get("type") != "null"), schema)
    if name == "data":
        plausible = st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
    elif name == "at":
        plausible = st.one_of(
            st.sampled_from(["seq:1", "seq:0", "mark:m", "m", "2026-01-01T00:00:00Z"]),
            st.floats(min_value=0, max_value=4e9),
        )
    elif name == "version":
        plausible = st.text("0123456789abcdef", min_size=4, max_size=16)
    elif "enum" in schema:
        plausible = st.sampled_from(schema["enum"])
    elif schema.get("type") in ("integer", "number"):
        plausible = st.integers(min_value=0, max_value=1 << 20)
    elif schema.get("type") == "boolean":
        plausible = st.booleans()
    else:
        plausible = st.text(max_size=20)
    return draw(st.one_of(plausible, plausible, plausible, json_values))


def escape(value: Any) -> str:
    """Percent-escaped bytes of ``value``: raw bytes for surrogate escapes, and
    invalid UTF-8 for any other lone surrogate."""
    text = str(value)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return quote(raw, safe="")


def body_schema(op: dict[str, Any]) -> dict[str, Any]:
    content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    return dict(content.get("schema", {}).get("properties", {}))


@st.composite
def request_for(draw: st.DrawFn, w: World) -> tuple[str, str, bytes | None]:
    method, route, op = draw(st.sampled_from(ROUTES))
    if method == "GET":
        params: list[tuple[str, Any]] = []
        for p in op.get("parameters", []):
            if not draw(st.booleans()):  # Hypothesis leans to False: present by default
                name = p["name"]
                value = draw(path_value(w)) if name == "path" else draw(json_values)
                if name == "follow":
                    value = "0"  # a follow never ends: its own test covers it
                params.append((name, value))
        if draw(st.integers(0, 9)) == 9:
            params.append((draw(st.text(min_size=1, max_size=8)), draw(json_values)))
        query = "&".join(f"{escape(k)}={escape(v)}" for k, v in params)
        return method, route + ("?" + query if query else ""), None
    props = body_schema(op)
    data: dict[str, Any] = {}
    for name, schema in props.items():
        if draw(st.integers(0, 3)) < 3:  # Hypothesis leans to 0: present by default
            data[name] = draw(field_value(w, name, schema))
    if draw(st.integers(0, 9)) == 9:
        data[draw(st.text(max_size=8))] = draw(json_values)
    shape = draw(st.integers(0, 19))
    if shape == 19:
        return method, route, draw(st.binary(max_size=64))
    if shape == 18:
        return method, route, json.dumps(draw(json_values)).encode()
    return method, route, json.dumps(data).encode()


def check_answer(method: str, url: str, body: bytes | None, status: int, answer: Any) -> None:
    """Never a 5xx; errors in the error shape; a success in the shape its route declares."""
    what = f"{method} {url[:200]} {body[:300] if body else b''!r}"
    assert status < 500, f"{what} -> {status} {answer}"
    if status >= 400:
        assert isinstance(answer, dict) and set(answer) == ERROR_KEYS, f"{what} -> {answer}"
        assert answer["error"] and isinstance(answer["exit_code"], int), f"{what} -> {answer}"
        return
    declared = shapes.route(method, url.split("?", 1)[0])
    try:
        msgspec.convert(answer, declared.answer, strict=True)
    except msgspec.ValidationError as e:
        raise AssertionError(f"{what} -> {str(answer)[:500]}: not {declared.answer}: {e}") from e


def test_fuzz_every_route(world: World) -> None:
    tally: Counter[tuple[str, int]] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(request_for(world))
    def one(req: tuple[str, str, bytes | None]) -> None:
        method, url, body = req
        status, answer = raw_request(world.d.socket_path, method, url, body, timeout=60)
        tally[(url.split("?")[0], status)] += 1
        check_answer(method, url, body, status, answer)
        if url.startswith("/remove") or url.startswith("/pause"):
            world.reset()

    one()
    print(sorted(tally.items()))
    # Not vacuous: requests got past the checks to the engine, and were refused.
    assert any(status == 200 for _route, status in tally), tally
    assert any(400 <= status < 500 for _route, status in tally), tally
    status, health = raw_request(world.d.socket_path, "GET", "/health")
    assert status == 200 and health["ok"]
    assert world.d.proc is not None and world.d.proc.poll() is None
    log = world.d.log()
    assert "Traceback" not in log, log[-4000:]
