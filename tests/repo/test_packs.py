"""Pack files and the index (repo/packs.py), through the real LocalBackend."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import pytest

from filetwin.backends import LocalBackend
from filetwin.errors import CorruptObject, FiletwinError, ObjectNotFound, RepositoryError
from filetwin.repo.crypto import Keys
from filetwin.repo.packs import (
    INDEX,
    Location,
    PackReader,
    PackWriter,
    decode_blob,
    decode_index,
    encode_blob,
    encode_index,
    list_packs,
    load_index,
    pack_name,
    parse_pack,
    read_index,
    rebuild_index,
    write_index,
)


class CountingBackend(LocalBackend):
    """LocalBackend counting puts, optionally failing the next ones."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.puts: list[str] = []
        self.fail_puts = 0

    def put(self, name: str, data: bytes) -> None:
        if self.fail_puts:
            self.fail_puts -= 1
            raise RepositoryError(f"cannot write {name}: injected")
        self.puts.append(name)
        super().put(name, data)


@pytest.fixture(params=["none", "repokey"])
def keys(request: pytest.FixtureRequest) -> Keys:
    return Keys.generate(request.param)


@pytest.fixture
def backend(tmp_path: Path) -> CountingBackend:
    return CountingBackend(tmp_path / "repo")


def chunks(n: int, seed: int = 1) -> list[bytes]:
    """``n`` chunks of 1-20 KiB: half random, half compressible."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        size = rnd.randrange(1024, 20 * 1024)
        out.append(rnd.randbytes(size) if i % 2 else bytes([i % 251]) * size)
    return out


def write(
    backend: CountingBackend, keys: Keys, datas: list[bytes], target: int = 64 * 1024
) -> tuple[dict[str, bytes], dict[str, Location]]:
    w = PackWriter(backend, keys, target_size=target)
    by_id = {}
    for d in datas:
        cid = keys.chunk_id(d)
        by_id[cid] = d
        w.add(cid, d)
    w.flush()
    assert set(w.written) == set(by_id)
    return by_id, dict(w.written)


def raw_path(backend: LocalBackend, name: str) -> Path:
    return Path(backend.location) / name


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_round_trip_one_put_per_pack(backend: CountingBackend, keys: Keys) -> None:
    by_id, written = write(backend, keys, chunks(30))
    packs = sorted(list_packs(backend))
    assert len(packs) >= 3  # ~300 KiB stored against a 64 KiB target
    assert sorted(backend.puts) == sorted(pack_name(p) for p in packs)  # one put per pack
    reader = PackReader(backend, keys)
    for cid, loc in written.items():
        assert reader.read_chunk(cid, loc) == by_id[cid]
        assert loc.raw_length == len(by_id[cid])


def test_target_size_and_small_job_small_pack(backend: CountingBackend, keys: Keys) -> None:
    target = 64 * 1024
    _, written = write(backend, keys, chunks(30), target)
    sizes = {p: os.path.getsize(raw_path(backend, pack_name(p))) for p in list_packs(backend)}
    bodies = {
        p: max(loc.offset + loc.length for loc in written.values() if loc.pack == p) for p in sizes
    }
    full = [p for p in sizes if bodies[p] >= target]
    assert len(full) == len(sizes) - 1  # every pack reached the target but the last
    assert all(bodies[p] < target + 21 * 1024 for p in sizes)  # at most one chunk over
    small = CountingBackend(Path(backend.location).parent / "small")
    _, w2 = write(small, keys, [b"a 4 KiB save" * 340])
    (only,) = list_packs(small)
    assert os.path.getsize(raw_path(small, pack_name(only))) < 4096 + 200
    assert len(small.puts) == 1 and len(w2) == 1


def test_pack_alone_says_what_it_holds(backend: CountingBackend, keys: Keys) -> None:
    _, written = write(backend, keys, chunks(12))
    reader = PackReader(backend, keys)
    from_trailers: dict[str, Location] = {}
    for pid in list_packs(backend):
        from_trailers.update(reader.entries(pid))
    assert from_trailers == written


def test_index_round_trip_and_rebuild_equals_written(backend: CountingBackend, keys: Keys) -> None:
    _, written = write(backend, keys, chunks(20))
    name = write_index(backend, keys, written)
    assert name.startswith(INDEX)
    assert read_index(backend, keys, name) == written
    assert load_index(backend, keys) == written
    assert rebuild_index(backend, keys) == written
    # Deterministic: the same entries make the same object name.
    assert write_index(backend, keys, dict(reversed(list(written.items())))) == name
    assert decode_index(encode_index({}), "empty") == {}


def test_duplicates_stored_once_and_resolved_the_same_way(
    backend: CountingBackend, keys: Keys
) -> None:
    datas = chunks(6)
    w = PackWriter(backend, keys)
    for d in datas + datas:
        w.add(keys.chunk_id(d), d)
    w.flush()
    assert len(backend.puts) == 1 and len(w.written) == 6
    # Another writer stores the same chunks again (two jobs racing): two packs hold them.
    _, other = write(backend, keys, datas[:3])
    write_index(backend, keys, w.written)
    write_index(backend, keys, other)
    assert load_index(backend, keys) == rebuild_index(backend, keys)


def test_encrypted_pack_hides_content(backend: CountingBackend) -> None:
    secret = os.urandom(8192)
    for keys, visible in ((Keys.none(), True), (Keys.generate("repokey"), False)):
        _, written = write(backend, keys, [secret])
        (loc,) = written.values()
        stored = raw_path(backend, pack_name(loc.pack)).read_bytes()
        assert (secret[:64] in stored) is visible
        assert (bytes.fromhex(Keys.none().chunk_id(secret)) in stored) is visible


def test_flipped_byte_in_pack_fails_naming_it(backend: CountingBackend, keys: Keys) -> None:
    _, written = write(backend, keys, chunks(4), target=1 << 20)
    cid, loc = next(iter(written.items()))
    name = pack_name(loc.pack)
    seen: list[tuple[str, FiletwinError]] = []

    def record(n: str, e: FiletwinError) -> None:
        seen.append((n, e))

    for offset in (loc.offset + loc.length // 2, os.path.getsize(raw_path(backend, name)) - 20):
        flip(raw_path(backend, name), offset)
        with pytest.raises(CorruptObject, match=f"pack {name} is corrupt"):
            PackReader(backend, keys).read_chunk(cid, loc)
        with pytest.raises(CorruptObject, match=name):
            rebuild_index(backend, keys)
        seen.clear()
        assert rebuild_index(backend, keys, record) == {}
        assert [n for n, _ in seen] == [name]
        assert all(isinstance(e, CorruptObject) for _, e in seen)
        flip(raw_path(backend, name), offset)  # put it back
        assert PackReader(backend, keys).read_chunk(cid, loc)


def test_swapped_and_renamed_packs_fail(backend: CountingBackend, keys: Keys) -> None:
    by_id, written = write(backend, keys, chunks(8), target=40 * 1024)
    a, b = sorted(list_packs(backend))[:2]
    pa, pb = raw_path(backend, pack_name(a)), raw_path(backend, pack_name(b))
    da, db = pa.read_bytes(), pb.read_bytes()
    pa.write_bytes(db)
    pb.write_bytes(da)
    cid = next(c for c, loc in written.items() if loc.pack == a)
    with pytest.raises(CorruptObject, match=f"pack {pack_name(a)} is corrupt: its content"):
        PackReader(backend, keys).read_chunk(cid, written[cid])
    with pytest.raises(CorruptObject, match="does not match its name"):
        parse_pack(keys, a, pa.read_bytes())


def test_chunk_read_at_another_location_fails(backend: CountingBackend, keys: Keys) -> None:
    _, written = write(backend, keys, chunks(4), target=1 << 20)
    (c1, l1), (c2, l2) = list(written.items())[:2]
    with pytest.raises(CorruptObject, match=f"chunk {c1} in {pack_name(l2.pack)} is corrupt"):
        PackReader(backend, keys).read_chunk(c1, l2)
    past = Location(l1.pack, 10**9, 10, 10)
    with pytest.raises(CorruptObject, match="past the pack's end"):
        PackReader(backend, keys).read_chunk(c1, past)
    blob = encode_blob(keys, c2, b"not the data of c2")
    with pytest.raises(CorruptObject, match="content hashes to|fails authentication"):
        decode_blob(keys, c1, blob, "test")


def test_index_flipped_renamed_or_missing(backend: CountingBackend, keys: Keys) -> None:
    _, written = write(backend, keys, chunks(6))
    name = write_index(backend, keys, written)
    path = raw_path(backend, name)
    flip(path, path.stat().st_size // 2)
    with pytest.raises(CorruptObject, match=f"index {name}"):
        read_index(backend, keys, name)
    with pytest.raises(CorruptObject, match=f"index {name}"):
        load_index(backend, keys)
    flip(path, path.stat().st_size // 2)
    # The same object under another index name (a roll-back or a swap) does not pass.
    other = f"{INDEX}{'0' * 64}"
    backend.put(other, path.read_bytes())
    with pytest.raises(CorruptObject, match=f"index {other}"):
        read_index(backend, keys, other)
    with pytest.raises(ObjectNotFound):
        read_index(backend, keys, f"{INDEX}{'1' * 64}")


def test_encrypted_objects_need_their_keys(backend: CountingBackend) -> None:
    keys, stranger = Keys.generate("repokey"), Keys.generate("repokey")
    _, written = write(backend, keys, chunks(3))
    name = write_index(backend, keys, written)
    with pytest.raises(CorruptObject, match="fails authentication"):
        read_index(backend, stranger, name)
    with pytest.raises(CorruptObject, match="trailer"):
        rebuild_index(backend, stranger)
    cid, loc = next(iter(written.items()))
    with pytest.raises(CorruptObject, match="fails authentication"):
        PackReader(backend, stranger).read_chunk(cid, loc)


def test_failed_put_stores_nothing_and_can_be_retried(backend: CountingBackend, keys: Keys) -> None:
    datas = chunks(3)
    w = PackWriter(backend, keys)
    for d in datas:
        w.add(keys.chunk_id(d), d)
    backend.fail_puts = 1
    with pytest.raises(RepositoryError, match="injected"):
        w.flush()
    assert w.written == {} and list(list_packs(backend)) == []
    for d in datas:
        w.add(keys.chunk_id(d), d)
    assert len(w.flush()) == 3
    assert rebuild_index(backend, keys) == w.written


def test_threads_feed_one_writer(backend: CountingBackend, keys: Keys) -> None:
    datas = chunks(24, seed=7)
    w = PackWriter(backend, keys, target_size=48 * 1024)

    def feed(part: list[bytes]) -> None:
        for d in part:
            w.add(keys.chunk_id(d), d)

    threads = [threading.Thread(target=feed, args=(datas[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.flush()
    assert len(w.written) == 24
    reader = PackReader(backend, keys)
    assert all(reader.read_chunk(keys.chunk_id(d), w.written[keys.chunk_id(d)]) == d for d in datas)
    assert rebuild_index(backend, keys) == w.written


def test_malformed_pack_and_index(keys: Keys) -> None:
    from blake3 import blake3

    for data in (b"", b"xyz", b"\0" * 8, b"junk" * 10 + b"\x04\0\0\0FTP1"):
        with pytest.raises(CorruptObject, match="pack packs/"):
            parse_pack(keys, blake3(data).hexdigest(), data)
    good = encode_index({"a" * 64: Location("b" * 64, 0, 10, 10)})
    for bad in (good[:-1], good + b"\0", b"FTIX\x02" + good[5:]):
        with pytest.raises(CorruptObject, match="idx is corrupt"):
            decode_index(bad, "idx")


class GatedBackend(CountingBackend):
    """Reads of packs wait at a gate, so that other readers come while one reads."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = threading.Event()
        self.reading = threading.Event()
        self.pack_gets = 0

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if name.startswith("packs/"):
            self.pack_gets += 1
            self.reading.set()
            assert self.gate.wait(30)
        return super().get(name, offset, length)


def _waiting_on_a_future(t: threading.Thread) -> bool:
    import sys

    frame = sys._current_frames().get(t.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == "result":  # Future.result: waiting for the first read
            return True
        frame = frame.f_back
    return False


def test_readers_of_a_pack_being_read_wait_for_that_read(tmp_path: Path, keys: Keys) -> None:
    from tests.helpers import wait_until

    backend = GatedBackend(tmp_path / "repo")
    by_id, written = write(backend, keys, chunks(4))
    (pid,) = {loc.pack for loc in written.values()}
    reader = PackReader(backend, keys)
    got: dict[str, bytes] = {}

    def read(cid: str) -> None:
        got[cid] = reader.read_chunk(cid, written[cid])

    first, *others = list(written)
    threads = [threading.Thread(target=read, args=(first,))]
    threads[0].start()
    assert backend.reading.wait(30)
    threads += [threading.Thread(target=read, args=(cid,)) for cid in others]
    for t in threads[1:]:
        t.start()
    wait_until(lambda: all(_waiting_on_a_future(t) for t in threads[1:]), 30, "waiters")
    backend.gate.set()
    for t in threads:
        t.join(30)
    assert got == by_id
    assert backend.pack_gets == 1, "the pack was read again by a thread that waited"


def test_a_failed_read_is_every_waiters_error(tmp_path: Path, keys: Keys) -> None:
    backend = GatedBackend(tmp_path / "repo")
    _by_id, written = write(backend, keys, chunks(2))
    (pid,) = {loc.pack for loc in written.values()}
    flip(raw_path(backend, pack_name(pid)), 10)
    backend.gate.set()
    reader = PackReader(backend, keys)
    for cid, loc in written.items():
        with pytest.raises(CorruptObject, match="does not match its name"):
            reader.read_chunk(cid, loc)
    assert backend.pack_gets == len(written), "a failed read is not cached"
