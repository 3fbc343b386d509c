"""Connecting to the daemon's Unix sockets, waiting out a full backlog; HTTP over them.

A Unix stream socket does not queue connections past its listener's backlog.
A blocking ``connect`` waits there for a free slot, but Python's socket
timeouts make the socket non-blocking, and then ``connect`` fails at once with
EAGAIN: a client with a timeout was refused whenever many clients connected
in the same instant (the daemon accepts up to its backlog in one go). The
kernel's own send timeout bounds the blocking wait instead.
"""

from __future__ import annotations

import functools
import math
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import http.client

_TIMEVAL = struct.Struct("@ll")
#: the longest path a socket address holds (sun_path is 108 bytes with its NUL)
SUN_PATH_MAX = 107


@contextmanager
def addressable(path: str) -> Iterator[str]:
    """``path``, or when it is too long for a socket address, the same name
    reached through ``/proc/self/fd`` of its directory (held open meanwhile)."""
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        yield path
        return
    directory, name = os.path.split(path)
    dfd = os.open(directory or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{dfd}/{name}"
    finally:
        os.close(dfd)


def bind_unix(sock: socket.socket, path: str) -> None:
    """``sock.bind(path)``, for a path of any length (see addressable)."""
    with addressable(path) as where:
        sock.bind(where)


def connect_unix(path: str, timeout: float | None) -> socket.socket:
    """A stream socket connected to ``path``.

    Waits for a slot in the listener's backlog up to ``timeout`` seconds (None:
    as long as it takes), then raises TimeoutError; every other failure of
    ``connect`` (no such socket, refused) is raised as is. The socket returned
    has ``timeout`` set for its reads and writes. Nothing is left open on error.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if timeout is not None:
            # SO_SNDTIMEO bounds a blocking connect's wait for the backlog; a
            # zero timeval would mean "forever", so round up to a microsecond.
            usec = max(1, math.ceil(timeout * 1_000_000))
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDTIMEO, _TIMEVAL.pack(*divmod(usec, 1_000_000))
            )
        try:
            with addressable(path) as where:
                sock.connect(where)
        except BlockingIOError as e:  # EAGAIN after SO_SNDTIMEO: backlog still full
            raise TimeoutError(f"{path}: no free connection slot within {timeout:g} s") from e
        sock.settimeout(timeout)
        return sock
    except BaseException:
        sock.close()
        raise


def http_connection(path: str, timeout: float | None) -> http.client.HTTPConnection:
    """An http.client connection to the HTTP server on Unix socket ``path``
    (connected by connect_unix, so a full backlog is waited out)."""
    conn: http.client.HTTPConnection = _connection_class()(path, timeout)
    return conn


@functools.cache
def _connection_class() -> Any:
    # Made at the first call: http.client (with the email package it parses
    # headers with) takes ~40 ms to import, which a command that never talks
    # to the daemon need not pay.
    import http.client

    class UnixConnection(http.client.HTTPConnection):
        def __init__(self, socket_path: str, timeout: float | None) -> None:
            super().__init__("filetwin", timeout=timeout)
            self.socket_path = socket_path

        def connect(self) -> None:
            self.sock = connect_unix(self.socket_path, self.timeout)

    return UnixConnection
