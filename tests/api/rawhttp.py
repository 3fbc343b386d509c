"""Raw HTTP over the daemon's Unix socket: any bytes, any query string.

The client library refuses or encodes what a hostile client would send as
is; these helpers send it verbatim and return the status and the parsed body.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

from filetwin.unixsock import connect_unix

ERROR_KEYS = {"error", "type", "exit_code"}


class _Conn(http.client.HTTPConnection):
    def __init__(self, sock_path: Path, timeout: float) -> None:
        super().__init__("filetwin", timeout=timeout)
        self.sock_path = str(sock_path)

    def connect(self) -> None:
        self.sock = connect_unix(self.sock_path, self.timeout)


def raw_request(
    sock_path: Path,
    method: str,
    url: str,
    body: bytes | str | None = None,
    timeout: float = 60.0,
) -> tuple[int, Any]:
    """Send one request; return (status, JSON body). A body that is not JSON fails,
    but for a success declared text/plain (``GET /metrics``), returned as text."""
    conn = _Conn(sock_path, timeout)
    try:
        data = body.encode() if isinstance(body, str) else body
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.putrequest(method, url, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        if data is not None:
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    if response.status == 200 and response.getheader("Content-Type", "").startswith("text/plain"):
        return response.status, raw.decode()  # /metrics: Prometheus text, declared so
    try:
        parsed = json.loads(raw)
    except ValueError as e:
        what = f"{method} {url[:100]}: HTTP {response.status}"
        raise AssertionError(f"{what}, not JSON: {raw[:300]!r}") from e
    return response.status, parsed


def assert_error(reply: tuple[int, Any], expect_status: int, *words: str) -> None:
    """``reply`` (status, body) is the error shape with ``expect_status`` and ``words``."""
    status, answer = reply
    assert status == expect_status, (status, answer)
    assert isinstance(answer, dict) and set(answer) == ERROR_KEYS, answer
    assert isinstance(answer["error"], str) and isinstance(answer["type"], str)
    assert isinstance(answer["exit_code"], int)
    for w in words:
        assert w in answer["error"], (w, answer)
