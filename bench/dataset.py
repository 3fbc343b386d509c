"""A seeded, reproducible dataset: half compressible text, half random.

``build(root, scale)``: about 200 files from 4 KiB to 64 MiB (~256 MiB at
scale 1.0) plus one large file (1 GiB at scale 1.0) for the large-file rows.
The same seed gives the same bytes on every machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

WORDS = (
    "filetwin keeps a twin of every file that matters and heals the file from it "
    "version chunk manifest journal repository backend restore recovery policy "
    "the quick brown fox jumps over the lazy dog lorem ipsum dolor sit amet"
).split()


@dataclass(frozen=True)
class Dataset:
    root: Path
    small: list[Path]
    large: Path

    @property
    def files(self) -> list[Path]:
        return [*self.small, self.large]


def _text(rng: random.Random, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14)))
        out += f"{rng.randint(0, 10**6)} {line}\n".encode()
    return bytes(out[:size])


def sizes(scale: float, count: int = 200) -> list[int]:
    """Log-spread sizes from 4 KiB to 64 MiB, scaled to ~256 MiB × scale in all."""
    rng = random.Random(7)
    raw = [int(4096 * (2 ** rng.uniform(0, 14))) for _ in range(count)]
    factor = (256 << 20) * scale / sum(raw)
    return [max(64, min(64 << 20, int(s * factor))) for s in raw]


def build(root: Path, scale: float = 1.0, large_bytes: int | None = None) -> Dataset:
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(42)
    small = []
    for i, size in enumerate(sizes(scale)):
        path = root / f"d{i % 8}" / f"file{i:03d}.{'txt' if i % 2 else 'bin'}"
        path.parent.mkdir(exist_ok=True)
        if not path.exists() or path.stat().st_size != size:
            data = _text(rng, size) if i % 2 else rng.randbytes(size)
            path.write_bytes(data)
        small.append(path)
    large = root / "large.bin"
    want = large_bytes if large_bytes is not None else int((1 << 30) * scale)
    if not large.exists() or large.stat().st_size != want:
        block = random.Random(99)
        with large.open("wb") as fh:
            left = want
            while left:
                n = min(left, 8 << 20)
                fh.write(block.randbytes(n))
                left -= n
    return Dataset(root, small, large)


def change_middle(path: Path, nbytes: int, seed: int) -> None:
    """Overwrite ``nbytes`` in the middle of ``path`` in place (one write, one close)."""
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.seek(max(0, size // 2 - nbytes // 2))
        fh.write(random.Random(seed).randbytes(min(nbytes, size)))


def change_small(ds: Dataset, count: int, seed: int) -> list[Path]:
    rng = random.Random(seed)
    picked = rng.sample(ds.small, count)
    for p in picked:
        with p.open("ab") as fh:
            fh.write(rng.randbytes(1024))
    return picked
