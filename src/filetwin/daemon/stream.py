"""The write stream: a binary protocol on ``STATE_DIR/journal.sock``.

One HTTP request per write would throttle a busy application, so writes go
over a plain stream (what ``filetwin.open`` uses; any language can):

1. the client sends one JSON line: ``{"path": "/abs/path"}\\n``, optionally with
   ``"retries": N`` (0..10): a failed journal append of a frame is tried again
   on a reopened journal up to N times before it is answered with an error;
2. the daemon answers one JSON line: ``{"ok": true, "seq": LAST, "sync": MODE}``,
   or ``{"ok": false, "error": ..., "type": ...}`` and closes;
3. then frames: ``kind u8, offset u64, length u32`` (little endian) and
   ``length`` payload bytes. Kinds: 1 write, 2 truncate (offset = new
   length), 3 close-ok, 4 close-failed, 5 mark (payload = UTF-8 name);
4. each frame is answered, in order, by ``status u8, seq u64``: status 0 once
   the record is as durable as the entry's sync mode promises; status 1 is
   followed by ``length u32`` and a UTF-8 message, and the stream ends.

Frames may be pipelined. Peer credentials are checked as on the API socket.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct

from ..errors import FiletwinError, PermissionDenied, UsageError
from ..unixsock import bind_unix
from .engine import Engine
from .entrypaths import entry_path_async

FRAME = struct.Struct("<BQI")
ACK = struct.Struct("<BQ")
KIND_NAMES = {1: "write", 2: "truncate", 3: "close-ok", 4: "close-failed", 5: "mark"}
MAX_FRAME = 64 << 20
STREAM_NAME = "journal.sock"
#: open write streams at most; more are refused at once (each holds a descriptor)
MAX_STREAMS = 512
_open_streams = 0


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


async def _hello(engine: Engine, reader: asyncio.StreamReader) -> tuple[str, int]:
    line = await reader.readline()
    try:
        hello = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"the first line must be JSON: {e}") from e
    if not isinstance(hello, dict) or not isinstance(hello.get("path"), str):
        raise UsageError('the first line must be {"path": "/absolute/path"}')
    retries = hello.get("retries", 0)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 10:
        raise UsageError(f"retries must be a count from 0 to 10, not {retries!r}")
    path = await entry_path_async(hello["path"], engine.table)
    engine.onwrite.journaling(path)  # refuses on-close and paused entries
    return path, retries


async def serve_stream(
    engine: Engine, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Serve one write stream; at most MAX_STREAMS at once."""
    global _open_streams
    _open_streams += 1
    try:
        await _serve(engine, reader, writer)
    finally:
        _open_streams -= 1


async def _serve(
    engine: Engine, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        if _open_streams > MAX_STREAMS:
            raise FiletwinError(
                f"{MAX_STREAMS} write streams are open already; close one and try again"
            )
        uid = _peer_uid(writer)
        if uid is None or uid not in (0, os.geteuid()):
            raise PermissionDenied(f"uid {uid} may not use this daemon's write stream")
        path, retries = await _hello(engine, reader)
        row = engine.entry(path)
        writer.write(
            json.dumps(
                {"ok": True, "seq": engine.onwrite.last_seq(path), "sync": row["sync_mode"]}
            ).encode()
            + b"\n"
        )
        await writer.drain()
    except FiletwinError as e:
        writer.write(
            json.dumps({"ok": False, "error": e.message, "type": type(e).__name__}).encode() + b"\n"
        )
        await writer.drain()
        writer.close()
        return
    engine.onwrite.stream_opened(path)
    try:
        while True:
            try:
                head = await reader.readexactly(FRAME.size)
            except asyncio.IncompleteReadError:
                return
            kind, offset, length = FRAME.unpack(head)
            try:
                if kind not in KIND_NAMES:
                    raise UsageError(f"unknown frame kind {kind}")
                if length > MAX_FRAME:
                    raise UsageError(f"frame of {length} bytes is over the {MAX_FRAME} limit")
                payload = await reader.readexactly(length) if length else b""
                name = KIND_NAMES[kind]
                seq = await engine.onwrite.record(
                    path,
                    name,
                    offset,
                    payload if name == "write" else b"",
                    name=payload.decode() if name == "mark" else "",
                    retries=retries,
                )
            except (FiletwinError, UnicodeDecodeError) as e:
                message = str(e).encode()
                writer.write(ACK.pack(1, 0) + struct.pack("<I", len(message)) + message)
                await writer.drain()
                return
            writer.write(ACK.pack(0, seq))
            # Acks are 9 bytes: wait on the socket only if the client stops reading.
            if writer.transport.get_write_buffer_size() > 64 * 1024:
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        engine.onwrite.stream_closed(path)
        writer.close()


async def start_stream_server(engine: Engine, sock_path: str) -> asyncio.AbstractServer:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        bind_unix(sock, sock_path)
    finally:
        os.umask(old)
    os.chmod(sock_path, 0o600)
    return await asyncio.start_unix_server(
        lambda r, w: serve_stream(engine, r, w), sock=sock, limit=MAX_FRAME + FRAME.size
    )
