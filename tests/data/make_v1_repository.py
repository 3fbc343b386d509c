"""Make tests/data/v1-repository.tar.gz with the code of the last commit before packs.

Run from the repository root (it needs that commit's code on PYTHONPATH)::

    git worktree add /tmp/v1tree 2f4ba8d
    PYTHONPATH=/tmp/v1tree/src .venv/bin/python tests/data/make_v1_repository.py

It writes a repository of four entries (versions sharing chunks within an entry
and across entries, a tiny file, an empty file) under a fixed clock, tars it
into ``v1-repository.tar.gz`` (top directory ``repository/``) and lists every
version the old code stored (path, id, hash, size) in ``v1-repository.json``.
"""

from __future__ import annotations

import json
import random
import tarfile
import tempfile
from itertools import count
from pathlib import Path

from filetwin.backends import LocalBackend
from filetwin.repo import Repository

HERE = Path(__file__).resolve().parent
WORDS = [f"w{i:03d}" for i in range(16)]


def text(seed: int, size: int) -> bytes:
    """Compressible but chunkable content: seeded random words."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += rng.choice(WORDS).encode() + (b"\n" if rng.random() < 0.1 else b" ")
    return bytes(out[:size])


def main() -> None:
    import filetwin.repo.repository as old

    assert not hasattr(old, "ChunkStore"), "run with the pre-pack code on PYTHONPATH"
    ticks = count()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = Repository(LocalBackend(root / "repository"), clock=lambda: 1.7e9 + next(ticks))
        src = Path("/srv/v1")  # the paths the manifests record; the files live in tmp
        plan: list[tuple[str, bytes, str]] = []
        a1 = text(1, 600_000)
        a2 = a1[:300_000] + text(2, 5_000) + a1[300_000:]  # most chunks shared with a1
        a3 = a2 + text(3, 150_000)
        plan += [("a.txt", a1, "initial"), ("a.txt", a2, "close"), ("a.txt", a3, "close")]
        plan += [("b.bin", random.Random(4).randbytes(3_000), "initial")]
        plan += [("b.bin", random.Random(5).randbytes(3_000), "manual")]
        plan += [("c.txt", a1, "initial")]  # every chunk shared with another entry
        plan += [("empty", b"", "initial")]
        listing = []
        for name, data, cause in plan:
            real = root / "files" / name
            real.parent.mkdir(exist_ok=True)
            real.write_bytes(data)
            m = repo.prepare_file(real, cause)
            fields = {k: v for k, v in m.to_json().items() if k != "id"}
            fields["path"] = str(src / name)
            m = repo.commit(type(m).create(**fields))
            listing.append({"path": m.path, "id": m.id, "hash": m.hash, "size": m.size})
        with tarfile.open(HERE / "v1-repository.tar.gz", "w:gz") as tar:
            tar.add(root / "repository", arcname="repository")
    (HERE / "v1-repository.json").write_text(json.dumps(listing, indent=1) + "\n")


if __name__ == "__main__":
    main()
