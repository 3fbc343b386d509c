"""What changed between two contents: sizes, changed byte ranges, a text diff.

Both contents are read once, side by side, as streams of chunks (a version
read from the repository, a rebuilt moment, the live file), so files of any
size are compared in bounded memory. Only contents that are "text" are also
kept whole for the unified diff: valid UTF-8, no NUL byte, at most
``TEXT_MAX`` bytes each.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import blake3

#: largest content shown as a text diff (each side)
TEXT_MAX = 1 << 20
#: changed ranges listed; beyond them only counted
RANGES_MAX = 20
#: unified diff lines printed; beyond them only counted
DIFF_LINES_MAX = 400
BLOCK = 64 << 10


class _Reader:
    """``read(n)`` over an iterator of chunks."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""

    def read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = next(self._it, None)
            if chunk is None:
                break
            self._buf += bytes(chunk)
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


@dataclass
class Comparison:
    """The outcome of ``compare``; ``ranges`` are [start, end) offsets, merged,
    at most ``RANGES_MAX`` of ``ranges_total``."""

    size_a: int = 0
    size_b: int = 0
    hash_a: str = ""
    hash_b: str = ""
    changed_bytes: int = 0
    ranges: list[tuple[int, int]] = field(default_factory=list)
    ranges_total: int = 0
    #: both sides are text (see the module docstring): ``unified`` holds the diff
    text: bool = False
    unified: list[str] = field(default_factory=list)
    unified_total: int = 0

    @property
    def same(self) -> bool:
        return self.hash_a == self.hash_b and self.size_a == self.size_b


class _Ranges:
    """Changed offsets collected as merged ranges; only the first RANGES_MAX kept."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept: list[tuple[int, int]] = []
        self.total = 0
        self.bytes = 0
        self._open: tuple[int, int] | None = None

    def add(self, start: int, end: int) -> None:
        self.bytes += end - start
        if self._open is not None and self._open[1] == start:
            self._open = (self._open[0], end)  # touching the previous run: one range
            return
        self._close()
        self._open = (start, end)

    def _close(self) -> None:
        if self._open is not None:
            self.total += 1
            if len(self.kept) < self.limit:
                self.kept.append(self._open)
            self._open = None

    def done(self) -> None:
        self._close()


def _runs(a: bytes, b: bytes, base: int, out: _Ranges) -> None:
    """Add the differing runs of the equal-length ``a`` and ``b`` (at ``base``)."""
    if a == b:
        return
    if len(a) > 256:
        half = len(a) // 2
        _runs(a[:half], b[:half], base, out)
        _runs(a[half:], b[half:], base + half, out)
        return
    start = None
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x != y and start is None:
            start = i
        elif x == y and start is not None:
            out.add(base + start, base + i)
            start = None
    if start is not None:
        out.add(base + start, base + len(a))


def is_text(data: bytes) -> bool:
    """Valid UTF-8 with no NUL byte (what `diff` calls text, stricter about encodings)."""
    if b"\0" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def compare(
    a: Iterable[bytes],
    b: Iterable[bytes],
    label_a: str = "a",
    label_b: str = "b",
    ranges_max: int = RANGES_MAX,
    lines_max: int = DIFF_LINES_MAX,
) -> Comparison:
    """Compare two contents given as chunk streams (each read once, to its end)."""
    ra, rb = _Reader(a), _Reader(b)
    ha, hb = blake3.blake3(), blake3.blake3()
    ranges = _Ranges(ranges_max)
    whole_a: list[bytes] | None = []
    whole_b: list[bytes] | None = []
    offset = 0
    size_a = size_b = 0
    while True:
        x, y = ra.read(BLOCK), rb.read(BLOCK)
        if not x and not y:
            break
        ha.update(x)
        hb.update(y)
        size_a += len(x)
        size_b += len(y)
        common = min(len(x), len(y))
        _runs(x[:common], y[:common], offset, ranges)
        if len(x) != len(y):
            # One side ended: everything past it, on the longer side, is changed.
            ranges.add(offset + common, offset + max(len(x), len(y)))
        offset += max(len(x), len(y))
        # Kept whole only while both may still be text.
        if whole_a is not None and whole_b is not None:
            if size_a > TEXT_MAX or size_b > TEXT_MAX:
                whole_a = whole_b = None
            else:
                whole_a.append(x)
                whole_b.append(y)
    ranges.done()
    out = Comparison(
        size_a=size_a,
        size_b=size_b,
        hash_a=ha.hexdigest(),
        hash_b=hb.hexdigest(),
        changed_bytes=ranges.bytes,
        ranges=ranges.kept,
        ranges_total=ranges.total,
    )
    if whole_a is not None and whole_b is not None:
        text_a, text_b = b"".join(whole_a), b"".join(whole_b)
        if is_text(text_a) and is_text(text_b):
            out.text = True
            lines = list(_unified(text_a, text_b, label_a, label_b))
            out.unified_total = len(lines)
            out.unified = lines[:lines_max]
    return out


def _unified(a: bytes, b: bytes, label_a: str, label_b: str) -> Iterator[str]:
    for line in difflib.unified_diff(
        a.decode().splitlines(keepends=True),
        b.decode().splitlines(keepends=True),
        fromfile=label_a,
        tofile=label_b,
    ):
        # A last line without its newline is shown as diff(1) shows it.
        yield line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
