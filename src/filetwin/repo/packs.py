"""Pack files: many chunks in one object, and the index that finds them.

The byte formats of packs and index objects (repo/chunkstore.py uses them for
the repository). Every function takes the repository's ``Keys``
(repo/crypto.py); with ``Keys.none()``
nothing is sealed and ids are plain BLAKE3, with the same code path.

Chunk blob (one chunk as stored inside a pack)
----------------------------------------------
``keys.seal("chunk", <chunk id hex>, zstd(raw))``: one zstd frame (level 3, with
its content size, as chunks.encode_chunk), sealed with the chunk's id as the
name. So a blob only opens as the chunk it was written for, wherever it is
moved; after opening and decompressing, the raw data is hashed again
(``keys.chunk_id``) and must equal the id the caller asked for.

Pack object ``packs/<id[:2]>/<id>``, byte by byte
-------------------------------------------------
::

    body     blob 0 | blob 1 | ... | blob n-1          (offsets from byte 0 of the pack)
    trailer  keys.seal("pack-trailer", <BLAKE3 hex of body>, trailer plaintext)
    footer   u32 LE length of the sealed trailer | b"FTP1"      (8 bytes)

    trailer plaintext:
      b"FTPT" | u8 version (1) | u32 LE n
      n x ( chunk id (32 bytes) | u64 LE offset | u32 LE length | u32 LE raw length )

The pack id is the plain BLAKE3 hex of the whole pack (of ciphertext when
encrypted, so it says nothing about content). A pack alone says what it holds
(the trailer), so the index can be rebuilt from the packs. Authenticated: each
blob by its seal (bound to its chunk id) and its id check; the trailer by its
seal, bound to the body's hash; the whole pack by its name (any change, a
rename or a swap of two packs fails the hash check when a pack is read).

Index object ``index/<id>``
---------------------------
``keys.seal("index", "index/<id>", plaintext)`` where ``id = keys.name_hash(plaintext)``
(keyed when encrypted) and::

    plaintext: b"FTIX" | u8 version (1) | u32 LE number of packs
      per pack: pack id (32 bytes) | u32 LE n
        n x ( chunk id (32 bytes) | u64 LE offset | u32 LE length | u32 LE raw length )

A reader checks both the seal (kind and name) and that the plaintext hashes to
its name, so an index cannot be modified, moved or rolled back under its name.
Several index objects may coexist (one per job); the repository's index is
their union. A chunk found in two packs (a race of two writers, or a repack
before the old pack is deleted) resolves to the smallest pack id, so the union
is deterministic and equals the index rebuilt from the packs.

Reading: on a remote backend a chunk is read by reading its whole pack
(verified against the pack's name, then kept in a small LRU cache: a restore
reading chunks in pack order reads each pack once, one request each). On a
local directory a chunk is read alone, by its byte range (PackReader's
``ranged``): it is verified by its seal and its id all the same, and a small
file whose chunks share a pack with many others' (the first versions of an
``add``) is restored without reading the whole pack. ``check --read-data``
and gc always read and verify whole packs.
"""

from __future__ import annotations

import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass

import blake3
import zstandard

from filetwin.backends.base import Backend
from filetwin.errors import CorruptObject, FiletwinError, ObjectNotFound
from filetwin.repo.chunks import MAX_SIZE, encode_chunk, is_chunk_id
from filetwin.repo.crypto import Keys

PACKS = "packs/"
INDEX = "index/"
#: A pack is put as soon as its body reaches this many bytes (so it is at most
#: this plus one chunk); a job with less data makes a smaller pack.
DEFAULT_TARGET_SIZE = 16 * 1024 * 1024

_FOOTER = struct.Struct("<I4s")
_FOOTER_MAGIC = b"FTP1"
_TRAILER_HEAD = struct.Struct("<4sBI")
_TRAILER_MAGIC = b"FTPT"
_INDEX_HEAD = struct.Struct("<4sBI")
_INDEX_MAGIC = b"FTIX"
_PACK_HEAD = struct.Struct("<32sI")
_ENTRY = struct.Struct("<32sQII")
_VERSION = 1


@dataclass(frozen=True)
class Location:
    """Where a chunk is stored: its pack, its blob's offset and length in the pack,
    and the chunk's raw (uncompressed) length."""

    pack: str  # pack id, 64 hex
    offset: int
    length: int
    raw_length: int


def pack_name(pack_id: str) -> str:
    """Backend object name of a pack: ``packs/<id[:2]>/<id>``."""
    return f"{PACKS}{pack_id[:2]}/{pack_id}"


def index_name(index_id: str) -> str:
    """Backend object name of an index object: ``index/<id>``."""
    return f"{INDEX}{index_id}"


def encode_blob(keys: Keys, cid: str, data: bytes | memoryview) -> bytes:
    """A chunk's stored form in a pack: zstd, then sealed as ``chunk`` ``cid``."""
    return keys.seal("chunk", cid, encode_chunk(data))


def decode_blob(keys: Keys, cid: str, blob: bytes | memoryview, where: str) -> bytes:
    """The raw data of chunk ``cid`` from its stored blob, verified against the id.

    CorruptObject naming the chunk and ``where`` (its pack) when the blob does
    not open, does not decompress, claims more than MAX_SIZE, or hashes to
    another id.
    """
    what = f"chunk {cid} in {where}"
    try:
        frame = keys.open_sealed("chunk", cid, blob)
    except CorruptObject as e:
        raise CorruptObject(f"{what} is corrupt: {e}") from e
    try:
        size = zstandard.get_frame_parameters(frame).content_size
        # Refuse before allocating: a damaged header could claim gigabytes.
        if size > MAX_SIZE:
            raise CorruptObject(f"{what} is corrupt: claims {size} bytes, max is {MAX_SIZE}")
        data = zstandard.ZstdDecompressor().decompress(frame, max_output_size=MAX_SIZE)
    except zstandard.ZstdError as e:
        raise CorruptObject(f"{what} is corrupt: cannot decompress ({e})") from e
    actual = keys.chunk_id(data)
    if actual != cid:
        raise CorruptObject(f"{what} is corrupt: content hashes to {actual[:16]}…")
    return data


def _id_bytes(cid: str) -> bytes:
    if not is_chunk_id(cid):
        raise ValueError(f"malformed chunk id {cid!r}")
    return bytes.fromhex(cid)


class PackWriter:
    """Appends chunks into packs and puts each pack with one durable put.

    Thread-safe: ``add`` compresses and seals in the caller's thread and only
    appends under a lock, so several threads can feed one writer. A chunk added
    twice is stored once. Nothing is indexed here: the caller records the
    locations returned (``flush``/``add``) in an index object, after the packs.
    """

    def __init__(
        self, backend: Backend, keys: Keys, target_size: int = DEFAULT_TARGET_SIZE
    ) -> None:
        if target_size < 1:
            raise ValueError("target_size must be positive")
        self.backend = backend
        self.keys = keys
        self.target_size = target_size
        self._lock = threading.Lock()
        self._blobs: list[bytes] = []
        self._entries: list[tuple[str, int, int, int]] = []  # cid, offset, length, raw length
        self._size = 0
        self._hasher = blake3.blake3()
        self._seen: set[str] = set()  # in the open pack or already put by this writer
        #: Every chunk put by this writer so far, and where.
        self.written: dict[str, Location] = {}

    def add(self, cid: str, data: bytes | memoryview) -> dict[str, Location]:
        """Add chunk ``cid`` (the caller computed it with keys.chunk_id) holding ``data``.

        Returns the locations of the chunks of a pack this call put (when it
        filled the pack), else an empty dict (also for a chunk added before:
        see ``written``). RepositoryError from the put empties the open pack:
        its chunks, added by any thread, are not stored and are not in
        ``written``. A manifest may only name chunks found in ``written`` or
        in the index.
        """
        with self._lock:
            if cid in self._seen:
                return {}
        blob = encode_blob(self.keys, cid, data)
        return self.add_blob(cid, blob, len(data))

    def add_blob(self, cid: str, blob: bytes, raw_length: int) -> dict[str, Location]:
        """Add an already encoded blob (encode_blob), e.g. copied by a repack."""
        _id_bytes(cid)
        with self._lock:
            if cid in self._seen:
                return {}
            self._seen.add(cid)
            self._entries.append((cid, self._size, len(blob), raw_length))
            self._blobs.append(blob)
            self._hasher.update(blob)
            self._size += len(blob)
            if self._size < self.target_size:
                return {}
            full = self._detach()
        return self._put(*full)

    def flush(self) -> dict[str, Location]:
        """Put the open pack, if it holds anything; return its chunks' locations."""
        with self._lock:
            if not self._entries:
                return {}
            full = self._detach()
        return self._put(*full)

    def _detach(self) -> tuple[list[bytes], list[tuple[str, int, int, int]], blake3.blake3]:
        full = (self._blobs, self._entries, self._hasher)
        self._blobs, self._entries, self._size, self._hasher = [], [], 0, blake3.blake3()
        return full

    def _put(
        self,
        blobs: list[bytes],
        entries: list[tuple[str, int, int, int]],
        hasher: blake3.blake3,
    ) -> dict[str, Location]:
        body_hash = hasher.copy().hexdigest()
        plain = _TRAILER_HEAD.pack(_TRAILER_MAGIC, _VERSION, len(entries)) + b"".join(
            _ENTRY.pack(bytes.fromhex(c), o, n, r) for c, o, n, r in entries
        )
        trailer = self.keys.seal("pack-trailer", body_hash, plain)
        tail = trailer + _FOOTER.pack(len(trailer), _FOOTER_MAGIC)
        hasher.update(tail)
        pid = hasher.hexdigest()
        blobs.append(tail)
        try:
            self.backend.put(pack_name(pid), b"".join(blobs))
        except BaseException:
            with self._lock:  # not stored: a later add of these chunks must store them
                self._seen.difference_update(c for c, *_ in entries)
            raise
        out = {c: Location(pid, o, n, r) for c, o, n, r in entries}
        with self._lock:
            self.written.update(out)
        return out


def parse_pack(keys: Keys, pack_id: str, data: bytes) -> dict[str, Location]:
    """The chunks a pack holds, from its trailer, after checking the pack's hash.

    CorruptObject naming the pack when its content does not hash to its id,
    its footer or trailer is malformed or fails authentication, or an entry
    points outside the body.
    """
    name = pack_name(pack_id)
    if blake3.blake3(data).hexdigest() != pack_id:
        raise CorruptObject(f"pack {name} is corrupt: its content does not match its name")
    if len(data) < _FOOTER.size:
        raise CorruptObject(f"pack {name} is corrupt: too short ({len(data)} bytes)")
    tlen, magic = _FOOTER.unpack_from(data, len(data) - _FOOTER.size)
    body_len = len(data) - _FOOTER.size - tlen
    if magic != _FOOTER_MAGIC or body_len < 0:
        raise CorruptObject(f"pack {name} is corrupt: bad footer")
    body = memoryview(data)[:body_len]
    sealed = memoryview(data)[body_len : body_len + tlen]
    try:
        plain = keys.open_sealed("pack-trailer", blake3.blake3(body).hexdigest(), sealed)
    except CorruptObject as e:
        raise CorruptObject(f"pack {name} is corrupt: its trailer {e}") from e
    entries = _parse_entries(plain, _TRAILER_HEAD, _TRAILER_MAGIC, f"pack {name} trailer")[0]
    out: dict[str, Location] = {}
    for cid, offset, length, raw in entries:
        if offset + length > body_len or raw > MAX_SIZE:
            raise CorruptObject(f"pack {name} is corrupt: entry {cid} lies outside its body")
        out[cid] = Location(pack_id, offset, length, raw)
    return out


def _parse_entries(
    plain: bytes, head: struct.Struct, magic: bytes, what: str, at: int = 0
) -> tuple[list[tuple[str, int, int, int]], int]:
    """Entries after a header ``head`` (magic, version, count) at ``at``; the end offset."""
    try:
        m, version, count = head.unpack_from(plain, at)
        if m != magic or version != _VERSION:
            raise CorruptObject(f"{what} is corrupt: bad magic or version {version}")
        at += head.size
        out = []
        for _ in range(count):
            cid, offset, length, raw = _ENTRY.unpack_from(plain, at)
            out.append((cid.hex(), offset, length, raw))
            at += _ENTRY.size
    except struct.error as e:
        raise CorruptObject(f"{what} is corrupt: truncated ({e})") from e
    return out, at


class PackReader:
    """Reads chunks out of packs through a Backend, verifying everything it returns.

    Thread-safe. Keeps the last ``cache_packs`` packs it read (verified) in memory.
    With ``ranged`` a chunk of a pack not in the cache is read alone (its byte
    range): the chunk is still verified (its seal, and its content against its
    id, which the authenticated manifest names), so nothing unverified is ever
    returned, but damage elsewhere in its pack goes unseen (``check
    --read-data`` reads packs whole). Worth it where a read costs no round trip
    (a local directory): a restore of a small file that shares a pack with
    others then reads its own bytes, not the whole pack.
    """

    def __init__(
        self, backend: Backend, keys: Keys, cache_packs: int = 2, *, ranged: bool = False
    ) -> None:
        self.backend = backend
        self.keys = keys
        self.cache_packs = cache_packs
        self.ranged = ranged
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        #: packs being read by some thread: the others wait on its result
        self._reading: dict[str, Future[bytes]] = {}
        self._lock = threading.Lock()

    def pack(self, pack_id: str) -> bytes:
        """The whole pack, checked against its name. ObjectNotFound if absent,
        CorruptObject naming it if its content does not match its name.

        Threads asking for a pack another thread is reading wait for that read
        (and get its result or its error) instead of reading it again."""
        with self._lock:
            data = self._cache.get(pack_id)
            if data is not None:
                self._cache.move_to_end(pack_id)
                return data
            reading = self._reading.get(pack_id)
            mine = reading is None
            if reading is None:
                reading = self._reading[pack_id] = Future()
        if not mine:
            return reading.result()
        try:
            data = self.backend.get(pack_name(pack_id))
            if blake3.blake3(data).hexdigest() != pack_id:
                raise CorruptObject(
                    f"pack {pack_name(pack_id)} is corrupt: its content does not match its name"
                )
        except BaseException as e:
            with self._lock:
                del self._reading[pack_id]
            reading.set_exception(e)
            raise
        with self._lock:
            del self._reading[pack_id]
            self._cache[pack_id] = data
            while len(self._cache) > self.cache_packs:
                self._cache.popitem(last=False)
        reading.set_result(data)
        return data

    def read_chunk(self, cid: str, loc: Location) -> bytes:
        """The raw data of chunk ``cid`` stored at ``loc``, verified against its id.

        ObjectNotFound if the pack is absent; CorruptObject naming the pack (and
        the chunk) if anything read does not verify.
        """
        where = pack_name(loc.pack)
        with self._lock:
            cached = self._cache.get(loc.pack)
        blob: bytes | memoryview
        if cached is None and self.ranged:
            blob = self.backend.get(where, loc.offset, loc.length)
        else:
            data = self.pack(loc.pack) if cached is None else cached
            blob = memoryview(data)[loc.offset : loc.offset + loc.length]
        if len(blob) != loc.length:  # both clip a range running past the end
            raise CorruptObject(f"chunk {cid} in {where} is corrupt: it lies past the pack's end")
        out = decode_blob(self.keys, cid, blob, where)
        if len(out) != loc.raw_length:
            raise CorruptObject(f"chunk {cid} in {where} is corrupt: length differs from index")
        return out

    def entries(self, pack_id: str) -> dict[str, Location]:
        """What a pack holds, from its own trailer (see parse_pack)."""
        return parse_pack(self.keys, pack_id, self.pack(pack_id))


# -- the index ---------------------------------------------------------------------


def encode_index(entries: Mapping[str, Location]) -> bytes:
    """The plaintext of an index object holding ``entries`` (deterministic: sorted)."""
    by_pack: dict[str, list[tuple[str, Location]]] = {}
    for cid, loc in entries.items():
        by_pack.setdefault(loc.pack, []).append((cid, loc))
    parts = [_INDEX_HEAD.pack(_INDEX_MAGIC, _VERSION, len(by_pack))]
    for pid in sorted(by_pack):
        items = sorted(by_pack[pid], key=lambda e: e[1].offset)
        parts.append(_PACK_HEAD.pack(_id_bytes(pid), len(items)))
        parts.extend(
            _ENTRY.pack(_id_bytes(c), loc.offset, loc.length, loc.raw_length) for c, loc in items
        )
    return b"".join(parts)


def decode_index(plain: bytes, what: str) -> dict[str, Location]:
    """Parse an index plaintext; CorruptObject naming ``what`` if malformed."""
    try:
        magic, version, npacks = _INDEX_HEAD.unpack_from(plain, 0)
        if magic != _INDEX_MAGIC or version != _VERSION:
            raise CorruptObject(f"{what} is corrupt: bad magic or version {version}")
        at = _INDEX_HEAD.size
        out: dict[str, Location] = {}
        for _ in range(npacks):
            pid_b, count = _PACK_HEAD.unpack_from(plain, at)
            pid = pid_b.hex()
            at += _PACK_HEAD.size
            for _ in range(count):
                cid_b, offset, length, raw = _ENTRY.unpack_from(plain, at)
                at += _ENTRY.size
                _merge(out, cid_b.hex(), Location(pid, offset, length, raw))
    except struct.error as e:
        raise CorruptObject(f"{what} is corrupt: truncated ({e})") from e
    if at != len(plain):
        raise CorruptObject(f"{what} is corrupt: {len(plain) - at} bytes after its end")
    return out


def _merge(into: dict[str, Location], cid: str, loc: Location) -> None:
    # The smallest pack id wins, so every union is the same whatever the order.
    old = into.get(cid)
    if old is None or loc.pack < old.pack:
        into[cid] = loc


def write_index(backend: Backend, keys: Keys, entries: Mapping[str, Location]) -> str:
    """Put ``entries`` as one sealed index object; return its name.

    Put the packs first: an index must never name a pack that is not durable.
    """
    plain = encode_index(entries)
    name = index_name(keys.name_hash(plain))
    backend.put(name, keys.seal("index", name, plain))
    return name


def read_index(backend: Backend, keys: Keys, name: str) -> dict[str, Location]:
    """One index object, authenticated (seal bound to its name; plaintext hashes to
    its name). ObjectNotFound if absent, CorruptObject naming it otherwise."""
    plain = keys.open_sealed("index", name, backend.get(name))
    if index_name(keys.name_hash(plain)) != name:
        raise CorruptObject(f"index {name} is corrupt: its content does not match its name")
    return decode_index(plain, f"index {name}")


def load_index(backend: Backend, keys: Keys) -> dict[str, Location]:
    """The union of every index object in the repository."""
    out: dict[str, Location] = {}
    for name in sorted(backend.list(INDEX)):
        for cid, loc in read_index(backend, keys, name).items():
            _merge(out, cid, loc)
    return out


def list_packs(backend: Backend) -> Iterator[str]:
    """The ids of every pack in the repository (from their names)."""
    for name in backend.list(PACKS):
        pid = name.rsplit("/", 1)[-1]
        if is_chunk_id(pid) and name == pack_name(pid):  # a stray object is no pack
            yield pid


def rebuild_index(
    backend: Backend,
    keys: Keys,
    on_error: Callable[[str, FiletwinError], None] | None = None,
) -> dict[str, Location]:
    """The index rebuilt from the packs alone (each pack read whole and verified).

    A pack that is damaged raises CorruptObject naming it, unless ``on_error``
    is given: then ``on_error(pack object name, error)`` is called and the rest
    is rebuilt. A pack deleted while listed is skipped.
    """
    out: dict[str, Location] = {}
    for pid in sorted(list_packs(backend)):
        try:
            entries = parse_pack(keys, pid, backend.get(pack_name(pid)))
        except ObjectNotFound:
            continue
        except CorruptObject as e:
            if on_error is None:
                raise
            on_error(pack_name(pid), e)
            continue
        for cid, loc in entries.items():
            _merge(out, cid, loc)
    return out
