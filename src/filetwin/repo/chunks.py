"""Chunks: content-defined pieces of file data, named by their BLAKE3 hash, stored zstd-compressed.

Parameters (changing any of them changes every chunk id and so stops dedup
against existing data — treat them as part of the repository format):

* FastCDC 2020 with avg 256 KiB, min 64 KiB, max 1 MiB, normalized chunking 1,
  seed 0.  Boundaries depend only on content (not on how reads are buffered),
  so an edit only changes the chunks around it.  Per pyfastcdc's docs the real
  average is about avg + min = 80 KiB: small enough for good dedup of edits,
  large enough that a 10 GiB file is ~130k objects, not millions.
* chunk id = full 64-hex BLAKE3 of the raw (uncompressed) chunk data.
* stored as one zstd frame, level 3 (zstd's default speed/ratio balance),
  under ``chunks/<id[:2]>/<id>`` so no directory grows past ~1/256 of the chunks.
"""

from __future__ import annotations

import re

import blake3
import pyfastcdc
import zstandard

from filetwin.errors import CorruptObject

AVG_SIZE = 256 * 1024
MIN_SIZE = 64 * 1024
MAX_SIZE = 1024 * 1024
ZSTD_LEVEL = 3

_ID = re.compile(r"[0-9a-f]{64}")


def new_chunker() -> pyfastcdc.FastCDC:
    """A FastCDC chunker with the repository's parameters (not thread-safe: one per use)."""
    return pyfastcdc.FastCDC(avg_size=AVG_SIZE, min_size=MIN_SIZE, max_size=MAX_SIZE)


def chunk_id(data: bytes | memoryview) -> str:
    """The id of a chunk: BLAKE3 hex of its raw data."""
    return blake3.blake3(data).hexdigest()


def is_chunk_id(value: str) -> bool:
    """Whether ``value`` is a well-formed chunk id (64 lowercase hex)."""
    return bool(_ID.fullmatch(value))


def chunk_name(chunk_id: str) -> str:
    """Backend object name of a chunk: ``chunks/<id[:2]>/<id>``."""
    return f"chunks/{chunk_id[:2]}/{chunk_id}"


def encode_chunk(data: bytes | memoryview) -> bytes:
    """Compress raw chunk data into the stored form (one zstd frame with its content size)."""
    # A compressor per call: ZstdCompressor objects must not be shared between threads.
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True).compress(data)


def decode_chunk(chunk_id: str, blob: bytes) -> bytes:
    """Decompress a stored chunk and verify it hashes to ``chunk_id``.

    Raises CorruptObject naming the chunk when the blob does not decompress,
    claims more than MAX_SIZE bytes, or its content does not match its id.
    """
    name = chunk_name(chunk_id)
    try:
        params = zstandard.get_frame_parameters(blob)
        # Refuse before allocating: a damaged header could claim gigabytes.
        if params.content_size > MAX_SIZE:
            raise CorruptObject(
                f"chunk {name} is corrupt: claims {params.content_size} bytes, max is {MAX_SIZE}"
            )
        data = zstandard.ZstdDecompressor().decompress(blob, max_output_size=MAX_SIZE)
    except zstandard.ZstdError as e:
        raise CorruptObject(f"chunk {name} is corrupt: cannot decompress ({e})") from e
    actual = blake3.blake3(data).hexdigest()
    if actual != chunk_id:
        raise CorruptObject(f"chunk {name} is corrupt: content hashes to {actual[:16]}…")
    return data
