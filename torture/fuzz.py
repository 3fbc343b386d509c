"""API and stream fuzzing: the OpenAPI document drives a property-based fuzzer
(hypothesis strategies built from the document's JSON schemas by
``from_schema`` below, sent over the Unix socket by our own transport), plus
hostile requests no schema describes; the write stream gets random frames.

Invariants: never a 500 or an error that is not JSON, the daemon stays up and
``/health`` answers, and an on-write entry fed random frames still restores
its newest state and takes a version (one bogus record must not poison it).
Every path a request names is kept inside the sandbox directory, so the fuzzer
(running as root) never touches the machine's real files.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import socket
import struct
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filetwin.errors import FiletwinError
from filetwin.unixsock import http_connection

from .harness import Daemon, TortureTimeout, wait_until
from .model import Summary

FRAME = struct.Struct("<BQI")
ACK = struct.Struct("<BQ")


class Fuzzer:
    """Requests to one daemon, and the checks after each."""

    def __init__(self, root: Path, summary: Summary, rng: random.Random) -> None:
        self.root = root
        self.summary = summary
        self.rng = rng
        self.sandbox = root / "sandbox"
        self.sandbox.mkdir()
        # Records may make a file at most 1 GiB (the documented max_file_size):
        # the check after the stream folds and restores what the frames wrote.
        self.daemon = Daemon(root / "state", {"max_file_size": 1 << 30}).start()
        self.daemon.client.timeout = 30
        self.closed = self.sandbox / "closed.txt"
        self.closed.write_bytes(b"closed\n" * 100)
        self.journaled = self.sandbox / "journaled.db"
        self.journaled.write_bytes(b"journaled\n" * 100)
        self.daemon.client.add(self.closed)
        self.daemon.client.add(self.journaled, backup="on-write")
        self.spec: dict[str, Any] = self.daemon.client.request("GET", "/openapi.json")

    def close(self) -> None:
        self.daemon.stop(signal.SIGKILL)

    # the transport -------------------------------------------------------
    def send(self, method: str, url: str, body: bytes | None, what: str) -> None:
        """Send one request; a 500, a non-JSON error or a dead daemon is a violation."""
        self.summary.add("requests sent")
        conn = http_connection(str(self.daemon.socket_path), 30)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, url, body=body, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            status = response.status
        except (OSError, ValueError) as e:  # ValueError: http.client refuses the URL
            if isinstance(e, ValueError):
                self.summary.add("requests refused by the client")
                return
            status, raw = -1, str(e).encode()
        finally:
            conn.close()
        if status >= 400 or status == -1:
            self.summary.add("bad inputs refused")
        if status >= 500 or status == -1:
            self.summary.violate(
                "no 500s",
                f"{method} {url.split('?')[0]}: HTTP {status} ({raw[:120]!r})",
                f"{method} {url[:200]} with body {(body or b'')[:200]!r}",
            )
        elif status >= 400:
            try:
                err = json.loads(raw)
                assert isinstance(err, dict) and "error" in err
            except (ValueError, AssertionError):
                self.summary.violate(
                    "errors are JSON",
                    f"{method} {url.split('?')[0]}: HTTP {status} is not a JSON error",
                    f"{method} {url[:200]} with body {(body or b'')[:200]!r}",
                )
        self.healthy(what)

    def healthy(self, what: str) -> bool:
        """The daemon is alive and /health answers within 5 s."""
        conn = http_connection(str(self.daemon.socket_path), 5)
        try:
            conn.request("GET", "/health")
            ok = conn.getresponse().status == 200
        except OSError:
            ok = False
        finally:
            conn.close()
        if not ok or not self.daemon.alive():
            self.summary.violate("the daemon stays up", f"/health does not answer after {what}")
            self.daemon.stop(signal.SIGKILL)
            self.daemon.start()
        return ok

    # keeping paths inside the sandbox ------------------------------------------
    def confine(self, value: Any, key: str = "") -> Any:
        """Every ``path``/``to`` string is rewritten to lie in the sandbox (or to
        name one of its two entries), keeping the fuzzed characters."""
        if isinstance(value, dict):
            return {k: self.confine(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.confine(v, key) for v in value]
        if key in ("path", "to") and isinstance(value, str):
            pick = self.rng.random()
            if pick < 0.4 and key == "path":
                return str(self.rng.choice([self.closed, self.journaled]))
            safe = value.replace("/", "_").replace("..", "__")
            return f"{self.sandbox}/{safe}"
        return value

    # the campaigns -----------------------------------------------------------------
    def operations(self) -> list[tuple[str, str, dict[str, Any]]]:
        ops = []
        for url, methods in self.spec.get("paths", {}).items():
            for method, op in methods.items():
                if url == "/events" or url == "/openapi.json":
                    pass
                ops.append((method.upper(), url, op))
        return ops

    def fuzz_openapi(self, examples: int) -> None:
        ops = self.operations()
        per_op = max(5, examples // max(1, len(ops)))
        for method, url, op in ops:
            self._fuzz_op(method, url, op, per_op)

    def _fuzz_op(self, method: str, url: str, op: dict[str, Any], n: int) -> None:
        content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        body_schema = content.get("schema")
        params = op.get("parameters", [])
        query_schema = {
            "type": "object",
            "properties": {
                p["name"]: p.get("schema", {"type": "string"})
                for p in params
                if p.get("in") == "query"
            },
        }
        anything = st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
            lambda inner: (
                st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
            ),
            max_leaves=8,
        )
        # mostly valid by the schema (reaching deep code), sometimes anything at all
        bodies = from_schema(body_schema) | anything if body_schema else st.none()
        queries = from_schema(query_schema) if params else st.just({})
        # "follow" would stream forever; every other parameter is fuzzed
        if url == "/events":
            queries = queries.map(lambda q: {k: v for k, v in q.items() if k != "follow"})

        @settings(
            max_examples=n,
            database=None,
            deadline=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
        )
        @given(body=bodies, query=queries)
        def one(body: Any, query: dict[str, Any]) -> None:
            body = self.confine(body)
            query = self.confine(query)
            q = urlencode({k: _param(v) for k, v in query.items()}) if query else ""
            raw = None if body is None else json.dumps(body).encode()
            self.send(method, url + ("?" + q if q else ""), raw, f"{method} {url}")

        one()

    def hostile(self) -> None:
        """Requests no schema describes (issue 8 item 15, 13): each must be refused cleanly."""
        p = str(self.closed)
        cases: list[tuple[str, str, bytes | None]] = [
            ("POST", "/add", b"[" * 100_000 + b"]" * 100_000),
            ("POST", "/add", b"{not json"),
            ("POST", "/add", b"\xff\xfe"),
            ("GET", f"/events?after={10**30}", None),
            ("GET", "/events?after=-1", None),
            ("POST", "/add", json.dumps({"path": f"{self.sandbox}/a\0b"}).encode()),
            (
                "POST",
                "/restore",
                json.dumps({"path": p, "at": -1e20, "to": f"{self.sandbox}/o"}).encode(),
            ),
            (
                "POST",
                "/restore",
                json.dumps(
                    {"path": p, "at": "seq:99999999999999999999", "to": f"{self.sandbox}/o"}
                ).encode(),
            ),
            ("POST", "/add", json.dumps({"path": f"{self.sandbox}/" + "d/" * 20_000}).encode()),
        ]
        for method, url, body in cases:
            started = time.monotonic()
            self.send(method, url, body, f"hostile {method} {url[:40]}")
            if time.monotonic() - started > 5:
                self.summary.violate(
                    "the event loop stays free",
                    f"{method} {url[:40]} took {time.monotonic() - started:.1f} s",
                )

    def fuzz_stream(self, frames: int) -> None:
        """Random frames on journal.sock; then the entry must still restore and back up."""
        sock_path = str(self.daemon.state_dir / "journal.sock")
        sent = 0
        while sent < frames:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            try:
                s.connect(sock_path)
                hello = self._hello()
                s.sendall(hello)
                for _ in range(self.rng.randint(1, 20)):
                    s.sendall(self._frame())
                    sent += 1
                    self.summary.add("frames sent")
                with contextlib.suppress(OSError):
                    s.recv(4096)
            except OSError:
                self.summary.add("streams closed by the daemon")
            finally:
                s.close()
            self.healthy("random stream frames")
        self._entry_still_works()

    def _hello(self) -> bytes:
        r = self.rng.random()
        if r < 0.8:
            return json.dumps({"path": str(self.journaled)}).encode() + b"\n"
        if r < 0.9:
            return self.rng.randbytes(self.rng.randint(0, 64)) + b"\n"
        return json.dumps({"path": str(self.closed)}).encode() + b"\n"

    def _frame(self) -> bytes:
        r = self.rng
        kind = r.choice([1, 1, 1, 2, 3, 4, 5, 0, r.randint(6, 255)])
        offset = r.choice([0, r.randint(0, 4096), r.randint(0, 1 << 40), (1 << 62), (1 << 64) - 1])
        payload = r.randbytes(r.randint(0, 64))
        length = len(payload) if r.random() < 0.9 else r.choice([0, 1 << 31, (1 << 32) - 1])
        if kind == 2 and r.random() < 0.7:
            offset = r.randint(0, 2000)  # mostly sane truncates; the rest probe the limits
        return FRAME.pack(kind, offset, length) + payload

    def _entry_still_works(self) -> None:
        out = self.root / "after-stream.bin"
        c = self.daemon.client
        try:
            wait_until(lambda: self.daemon.idle(), 20, "the stream's jobs to end")
            c.restore(self.journaled, to=out)
            c.backup(self.journaled)
            self.summary.add("entry checks after the stream")
        except (FiletwinError, TortureTimeout, OSError) as e:
            self.summary.violate(
                "one bogus record must not poison an entry",
                f"after random stream frames the on-write entry no longer restores or backs up:"
                f" {type(e).__name__}: {str(e)[:200]}",
                "python -m torture --only fuzz --seed SEED",
            )


def from_schema(schema: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    """Values valid for ``schema`` (the subset of JSON Schema the document uses:
    object, string, integer, number, boolean, array, enum, bounds), with every
    optional property sometimes left out and strings of any character."""
    if not schema:
        return st.none()
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v) for k, v in props.items() if k in required},
            optional={k: from_schema(v) for k, v in props.items() if k not in required},
        )
    if kind == "integer":
        low = schema.get("minimum")
        high = schema.get("maximum")
        edge = st.sampled_from([0, -1, 1 << 31, 1 << 62, (1 << 63) - 1, 10**20])
        return st.integers(min_value=low, max_value=high) | (edge if low is None else st.nothing())
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False) | st.integers()
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {"type": "string"})), max_size=4)
    return st.text(max_size=40) | st.sampled_from(["", "seq:1", "mark:x", "2026-01-01T00:00:00Z"])


def _param(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def run(seed: int, examples: int, frames: int) -> Summary:
    summary = Summary("fuzz", seed)
    rng = random.Random(seed)
    print(f"fuzz: seed {seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="torture-fuzz-") as tmp:
        fz = Fuzzer(Path(tmp), summary, rng)
        try:
            # the stream first: the API fuzzer may pause or remove the entries
            fz.fuzz_stream(frames)
            fz.fuzz_openapi(examples)
            fz.hostile()
        finally:
            fz.close()
    return summary.finish()
