"""S3Backend when the real server goes away: stopped (SIGSTOP) or killed in the
middle of a put or a get.  Every call ends, within the backend's timeout, in a
retryable RepositoryError, and no partial object ever becomes visible: after
the server returns, an interrupted put is absent or whole.

These tests take the server away, so they run on a server of their own (not
the session's), started once for the module.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from filetwin.backends.s3 import TRANSFER_FACTOR, S3Backend
from filetwin.errors import RepositoryError, RepositoryRefused
from tests.s3server import S3Server, fresh_location, start_server

#: per-attempt connect/read timeout and attempts of the backends under test
TIMEOUT_S = 1.0
ATTEMPTS = 2
#: the longest a call may take: every attempt runs into its whole-request
#: deadline (a body the stopped server never reads), plus the backoff between
#: attempts (from 0.1 s, doubling), plus slack for a loaded machine
BOUND_S = ATTEMPTS * TRANSFER_FACTOR * TIMEOUT_S + 0.1 * 2**ATTEMPTS + 3.0
BIG = 32 << 20  # more than the socket buffers hold: the body is cut short mid-way


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    yield from start_server(tmp_path_factory.mktemp("seaweedfs-faults"))


@pytest.fixture(autouse=True)
def server_running_after(server: S3Server) -> Iterator[None]:
    """A test that fails half-way must not leave the next one a dead server."""
    yield
    if not server.running:
        server.start()
    else:
        server.resume()


def make_backend(server: S3Server, location: str | None = None) -> S3Backend:
    """A backend with short timeouts: the one a fault is aimed at."""
    return S3Backend(
        location or fresh_location(server),
        timeout=TIMEOUT_S,
        attempts=ATTEMPTS,
        **server.backend_args(),
    )


def sturdy(server: S3Server, location: str) -> S3Backend:
    """A backend with the default timeouts, to set up and check (a loaded machine
    must not fail those)."""
    return S3Backend(location, **server.backend_args())


def absent_or_whole(server: S3Server, location: str, name: str, *wholes: bytes) -> None:
    """After the server returns: ``name`` is absent, or exactly one of ``wholes``."""
    check = sturdy(server, location)
    # A round trip of our own first: the server is processing requests again,
    # after the interrupted connection (closed by the client before) was handled.
    check.put("probe", b"p")
    assert check.get("probe") == b"p"
    if check.exists(name):
        got = check.get(name)
        assert any(got == w for w in wholes), f"partial object: {len(got)} bytes"
        assert name in list(check.list())
    else:
        assert name not in list(check.list())


def timed_failure(call: Any) -> tuple[RepositoryError, float]:
    t0 = time.monotonic()
    with pytest.raises(RepositoryError) as e:
        call()
    return e.value, time.monotonic() - t0


def test_server_stopped_during_put(server: S3Server) -> None:
    b = make_backend(server)
    data = os.urandom(BIG)
    server.pause()  # the body fills the socket buffers, then nothing moves
    err, took = timed_failure(lambda: b.put("packs/big", data))
    assert took < BOUND_S, f"put took {took:.1f} s with the server stopped"
    assert err.retryable and not isinstance(err, RepositoryRefused)
    assert server.endpoint in str(err) and "packs/big" in str(err)
    server.resume()
    absent_or_whole(server, b.location, "packs/big", data)


def test_server_stopped_during_overwrite_keeps_old_or_new(server: S3Server) -> None:
    b = make_backend(server)
    old, new = os.urandom(BIG), os.urandom(BIG)
    sturdy(server, b.location).put("obj", old)
    server.pause()
    err, took = timed_failure(lambda: b.put("obj", new))
    assert took < BOUND_S and err.retryable
    server.resume()
    absent_or_whole(server, b.location, "obj", old, new)
    assert sturdy(server, b.location).exists("obj")


def test_server_killed_before_put(server: S3Server) -> None:
    b = make_backend(server)
    before = os.urandom(100_000)
    sturdy(server, b.location).put("before", before)
    server.kill()
    err, took = timed_failure(lambda: b.put("packs/p", b"x" * 1000))
    assert took < BOUND_S and err.retryable
    assert server.endpoint in str(err) and "packs/p" in str(err)
    server.start()  # same data directory, same ports
    absent_or_whole(server, b.location, "packs/p", b"x" * 1000)
    assert sturdy(server, b.location).get("before") == before


def test_server_killed_mid_upload(server: S3Server) -> None:
    b = make_backend(server)
    data = os.urandom(2 * BIG)  # ~1 s of upload here: the kill lands in the middle
    killer = threading.Timer(0.1, server.kill)
    killer.start()
    err, took = timed_failure(lambda: b.put("packs/big", data))
    killer.join()
    assert took < BOUND_S and err.retryable
    server.start()
    # Whenever the kill landed, the object is absent or whole.
    absent_or_whole(server, b.location, "packs/big", data)


def test_server_stopped_during_get(server: S3Server) -> None:
    b = make_backend(server)
    sturdy(server, b.location).put("obj", os.urandom(1 << 20))
    server.pause()
    for call in (lambda: b.get("obj"), lambda: b.get("obj", 10, 100), lambda: b.exists("obj")):
        err, took = timed_failure(call)
        assert took < BOUND_S, f"took {took:.1f} s with the server stopped"
        assert err.retryable and "timed out" in str(err)


def test_server_stopped_before_list_and_delete(server: S3Server) -> None:
    b = make_backend(server)
    sturdy(server, b.location).put("a/1", b"1")
    server.pause()
    for call in (lambda: list(b.list("a/")), lambda: b.delete("a/1")):
        err, took = timed_failure(call)
        assert took < BOUND_S and err.retryable
    server.resume()
    assert list(b.list("a/")) in (["a/1"], [])


def test_server_down_then_back(server: S3Server) -> None:
    b = make_backend(server)
    sturdy(server, b.location).put("kept", b"kept")
    server.kill()
    err, took = timed_failure(lambda: b.get("kept"))
    assert took < BOUND_S and err.retryable and server.endpoint in str(err)
    server.start()
    # The same backend object works again once the server is back.
    assert b.get("kept") == b"kept"
    b.put("after", b"after")
    assert sorted(b.list()) == ["after", "kept"]


def test_restart_keeps_the_data(server: S3Server) -> None:
    b = sturdy(server, fresh_location(server))
    blobs = {f"o/{i}": os.urandom(1000 * i) for i in range(5)}
    for name, blob in blobs.items():
        b.put(name, blob)
    server.restart()
    assert {n: b.get(n) for n in b.list("o/")} == blobs
