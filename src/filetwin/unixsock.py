"""Connecting to the daemon's Unix sockets, waiting out a full backlog.

A Unix stream socket does not queue connections past its listener's backlog.
A blocking ``connect`` waits there for a free slot, but Python's socket
timeouts make the socket non-blocking, and then ``connect`` fails at once with
EAGAIN: a client with a timeout was refused whenever many clients connected
in the same instant (the daemon accepts up to its backlog in one go). The
kernel's own send timeout bounds the blocking wait instead.
"""

from __future__ import annotations

import math
import socket
import struct

_TIMEVAL = struct.Struct("@ll")


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
            sock.connect(path)
        except BlockingIOError as e:  # EAGAIN after SO_SNDTIMEO: backlog still full
            raise TimeoutError(f"{path}: no free connection slot within {timeout:g} s") from e
        sock.settimeout(timeout)
        return sock
    except BaseException:
        sock.close()
        raise
