"""The repository: versions (manifests) of files, made of deduplicated chunks, on a Backend.

Layout on the backend (everything goes through Backend, so any store works):

* ``config`` and ``keys/`` — what the repository is and its keys (repo/format.py);
* ``packs/<id[:2]>/<id>`` and ``index/<id>`` — chunk data in pack files, and the
  index that finds each chunk (repo/packs.py, repo/chunkstore.py); a
  repository written before packs also has loose ``chunks/<id[:2]>/<id>``;
* ``manifests/<entry key>/<time_ns:019d>-<manifest id>.json`` — one version,
  sealed as kind ``manifest`` under its own name when the repository is
  encrypted (plain JSON otherwise). The entry key is the first 32 hex of the
  path's name hash: keyed when encrypted, so names say nothing about paths.

Manifest names sort by time, so an entry's history is one listing away and
retention is "delete the first names".  A version exists once its manifest is
put; packs are always put before the manifest that names their chunks, so a
crash leaves at worst unreferenced packs, which gc() removes.

Tamper evidence: in an encrypted repository every object is authenticated
(manifests and index objects by their seal bound to their name, packs by their
content hash and sealed trailer, chunks by their seal and keyed id), so a
modified, swapped or moved object fails to open and a restore that would use
it fails naming it. What sealing cannot show is an object deleted, or an entry
rolled back by deleting its newest versions: ``check`` compares with what the
state directory recorded. An unencrypted repository detects damage (every
object is hash-checked) but not a forger, who could write a valid object.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import tzinfo
from pathlib import Path
from typing import NamedTuple

import blake3

from filetwin.backends.base import Backend
from filetwin.errors import (
    CorruptObject,
    FiletwinError,
    NotFound,
    ObjectNotFound,
    RestoreError,
    SourceError,
    UnsafePath,
    UsageError,
)
from filetwin.repo import forget
from filetwin.repo.chunks import new_chunker
from filetwin.repo.chunkstore import ChunkStore
from filetwin.repo.crypto import Keys
from filetwin.repo.durable import os_error
from filetwin.repo.forget import Rules
from filetwin.repo.manifest import CAUSES, MANIFESTS, Manifest
from filetwin.repo.packs import DEFAULT_TARGET_SIZE, PackWriter
from filetwin.safeio import open_protected
from filetwin.timefmt import iso


def _name_time_ns(name: str) -> float:
    """The time (ns) a manifest's name carries (``.../<time_ns>-<id>.json``); a name
    not of that form counts as the newest (it is read to find out)."""
    try:
        return float(int(name.rsplit("/", 1)[-1].split("-", 1)[0]))
    except ValueError:
        return float("inf")


def _names_version(name: str, version_id: str) -> bool:
    """Whether the manifest object ``name`` is the one of version ``version_id``."""
    return name.rsplit("-", 1)[-1].removesuffix(".json") == version_id


#: version_counts lists every manifest at once from this many paths on
WHOLE_LISTING_FROM = 32

#: threads storing chunks of one file, and chunks in flight at most
STORE_THREADS = 4
STORE_WINDOW = 64


class _FdReader:
    """readinto() over an fd with pread: leaves the caller's file offset alone."""

    def __init__(
        self, fd: int, path: str, progress: Callable[[int], None] | None = None
    ) -> None:
        self.fd = fd
        self.path = path
        self.offset = 0
        self.progress = progress

    def readinto(self, buf: memoryview) -> int:
        try:
            n = os.preadv(self.fd, [buf], self.offset)
        except OSError as e:
            # The protected file failed, not the repository: only this may heal it.
            raise SourceError(
                f"cannot read {self.path} at byte {self.offset}: {e.strerror or e}", e.errno
            ) from e
        self.offset += n
        if self.progress is not None:
            self.progress(self.offset)
        return n


class Prepared(NamedTuple):
    """A version prepared by prepare_files, and the file's newest state before it."""

    manifest: Manifest
    previous: Manifest | None


def _check_cause(cause: str) -> None:
    if cause not in CAUSES:
        raise UsageError(f"unknown version cause {cause!r}; expected one of {sorted(CAUSES)}")


class _Unset:
    """The type of _UNSET: an argument not given (None means "no version")."""


_UNSET = _Unset()


class Repository:
    """Versions of files on a Backend.  Thread-safe for concurrent store/read/gc in one process.

    gc() must only run in the process that stores versions (the daemon): chunks
    stored by prepare_file are protected from gc until commit() in this
    process, but another process's uncommitted chunks are not.
    """

    def __init__(
        self,
        backend: Backend,
        clock: Callable[[], float] = time.time,
        *,
        keys: Keys | None = None,
        cache_dir: Path | None = None,
        pack_size: int = DEFAULT_TARGET_SIZE,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.keys = keys if keys is not None else Keys.none()
        self.chunks = ChunkStore(backend, self.keys, cache_dir=cache_dir, target_size=pack_size)
        self._pool: ThreadPoolExecutor | None = None
        # Chunks of prepared-but-uncommitted manifests: gc must not delete them.
        self._pending: Counter[str] = Counter()
        self._lock = threading.Lock()

    # -- storing -----------------------------------------------------------------

    def prepare_file(
        self,
        path: str | Path,
        cause: str,
        *,
        fd: int | None = None,
        journal_seq: int = 0,
        replaced_by: str = "",
        progress: Callable[[int], None] | None = None,
        previous: Manifest | None | _Unset = _UNSET,
    ) -> Manifest:
        """Store the file's chunks and return its Manifest WITHOUT writing it (see commit).

        Reads from ``fd`` if given (from offset 0 with pread; the fd's offset and
        ownership stay with the caller), else opens ``path`` with
        safeio.open_protected (UnsafePath for a symlink at the name or in a parent).
        Metadata comes from fstat BEFORE reading, so a write racing the read
        makes the file look newer than this version; ``size`` is the number of
        bytes actually read, so size, hash and chunks always agree.  The file is
        streamed through the chunker, never loaded whole.  Raises UsageError for
        a bad cause or a non-regular file, SourceError (with ``.errno``) when
        reading the file fails, and RepositoryError when storing a chunk fails:
        the caller must tell the two apart (only the first may heal the file).
        ``progress(bytes read so far)`` is called after each read. ``previous``
        is ``latest(path)`` when the caller has looked it up already (it decides
        ``unchanged``; on a remote backend each look-up is a listing and a read).
        """
        _check_cause(cause)
        self.chunks.sync()
        writer = self.chunks.writer()
        manifest = self._prepare_into(
            writer, os.fspath(path), cause, fd, journal_seq, replaced_by, progress, previous
        )
        self._flush(writer, [manifest], os.fspath(path))
        return manifest

    def prepare_files(
        self, files: Sequence[tuple[str, int]], cause: str, *, new: Collection[str] = ()
    ) -> list[Prepared | FiletwinError]:
        """prepare_file for several files, ``(path, journal_seq)`` each, whose new
        chunks share packs: one put per ~target size instead of one per file
        (the first versions of many small files). In the order given, for each
        file its Prepared manifest (not written: see commit) with the version
        that was the file's newest state, or the error that file alone met
        (SourceError, UnsafePath, UsageError as prepare_file; CorruptObject
        when its history cannot be read). Raises RepositoryError when storing
        fails: a pack put that failed may have held any file's chunks, so no
        manifest of the batch is returned. ``new``: paths the caller knows to
        have no version (their look-up, a listing each, is skipped).
        """
        _check_cause(cause)
        self.chunks.sync()
        paths = [path for path, _seq in files if path not in new]
        found = dict(zip(paths, self._store_pool().map(self._latest_or_error, paths), strict=True))
        previous = [found.get(path) for path, _seq in files]
        writer = self.chunks.writer()
        out: list[Prepared | FiletwinError] = []
        try:
            for (path, seq), prev in zip(files, previous, strict=True):
                if isinstance(prev, FiletwinError):
                    out.append(prev)
                    continue
                try:
                    m = self._prepare_into(writer, path, cause, None, seq, "", None, prev)
                except (SourceError, UnsafePath, UsageError) as e:
                    out.append(e)  # this file's own trouble, not the store's
                    continue
                out.append(Prepared(m, prev))
        except BaseException:
            self._release([c for p in out if isinstance(p, Prepared) for c in p.manifest.chunks])
            raise
        prepared = [p.manifest for p in out if isinstance(p, Prepared)]
        self._flush(writer, prepared, f"{len(files)} files")
        return out

    def _latest_or_error(self, path: str) -> Manifest | None | FiletwinError:
        try:
            return self.latest(path)
        except (CorruptObject, UsageError) as e:
            return e  # that entry's history is unreadable: its file alone fails

    def _flush(self, writer: PackWriter, prepared: list[Manifest], what: str) -> None:
        """Put the writer's open pack; on failure the prepared versions are released."""
        try:
            self.chunks.record(writer.flush())
        except BaseException as e:
            self._release([c for m in prepared for c in m.chunks])
            if isinstance(e, OSError):
                raise os_error(f"cannot store the chunks of {what}", e) from e
            raise

    def _prepare_into(
        self,
        writer: PackWriter,
        spath: str,
        cause: str,
        fd: int | None,
        journal_seq: int,
        replaced_by: str,
        progress: Callable[[int], None] | None,
        previous: Manifest | None | _Unset,
    ) -> Manifest:
        """prepare_file's reading and storing, into ``writer`` (not flushed: the
        caller puts its open pack before the manifest may be committed)."""
        own_fd = fd is None
        try:
            if fd is None:
                # No symlink at the name or in a parent is followed (UnsafePath).
                fd = open_protected(spath)
            st = os.fstat(fd)
        except OSError as e:
            if own_fd and fd is not None:
                os.close(fd)
            raise SourceError(f"cannot read {spath}: {e.strerror or e}", e.errno) from e
        try:
            if not stat.S_ISREG(st.st_mode):
                raise UsageError(f"{spath} is not a regular file")
            hasher = blake3.blake3()
            ids: list[str] = []
            size = 0
            # Chunks are hashed, compressed and durably written by a few threads
            # (each write waits on an fsync); reading and the file's hash stay here.
            pending: deque[Future[str]] = deque()
            try:
                # One pool for the repository's life: a pool per file cost small
                # files a sixth of their backup. The finally below waits for
                # every store that started before the chunks are released.
                with contextlib.nullcontext(self._store_pool()) as pool:
                    try:
                        for chunk in new_chunker().cut_stream(_FdReader(fd, spath, progress)):
                            # chunk.data is only valid until the next chunk: copy it.
                            data = bytes(chunk.data)
                            hasher.update(data)
                            size += chunk.length
                            pending.append(pool.submit(self._store_chunk, writer, data))
                            if len(pending) >= STORE_WINDOW:
                                ids.append(pending.popleft().result())
                        while pending:
                            ids.append(pending.popleft().result())
                    finally:
                        for f in pending:
                            f.cancel()
                        for f in pending:
                            if not f.cancelled():
                                with contextlib.suppress(BaseException):
                                    ids.append(f.result())
            except OSError as e:
                # Reads of the file raise SourceError: an OSError here is the store's.
                self._release(ids)
                raise os_error(f"cannot store the chunks of {spath}", e) from e
            except BaseException:
                self._release(ids)
                raise
        finally:
            if own_fd:
                os.close(fd)
        digest = hasher.hexdigest()
        if isinstance(previous, _Unset):
            try:
                previous = self.latest(spath)
            except BaseException:
                self._release(ids)
                raise
        return Manifest.create(
            path=spath, size=size, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid,
            gid=st.st_gid, mtime_ns=st.st_mtime_ns, hash=digest, chunks=ids, cause=cause,
            time=self.clock(), unchanged=previous is not None and previous.hash == digest,
            journal_seq=journal_seq, replaced_by=replaced_by,
        )  # fmt: skip

    def _store_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="store")
            return self._pool

    def _store_chunk(self, writer: PackWriter, data: bytes | memoryview) -> str:
        cid = self.keys.chunk_id(data)
        # Counted as pending under the lock: gc (which holds the lock while it
        # decides) then either ran before and is done, or will see it pending,
        # so the lookup and the add below need no lock and run in parallel.
        with self._lock:
            self._pending[cid] += 1
        if not self.chunks.has(cid):
            # A full pack is put here, by whichever thread filled it.
            self.chunks.record(writer.add(cid, data))
        return cid

    def entry_key(self, path: str) -> str:
        """The key of ``path`` in manifest names: keyed when the repository is
        encrypted (32 hex; equal to module-level entry_key otherwise)."""
        return self.keys.name_hash(path.encode("utf-8", "surrogateescape"))[:32]

    def manifest_name(self, manifest: Manifest) -> str:
        """The backend name of ``manifest`` in this repository."""
        return manifest.object_name(self.entry_key(manifest.path))

    def _release(self, ids: list[str] | tuple[str, ...]) -> None:
        with self._lock:
            self._pending.subtract(ids)
            self._pending = +self._pending  # drop counts that reached zero

    def release(self, manifest: Manifest) -> None:
        """Forget a prepared manifest that another process will commit.

        The chunks stay protected from this process's gc only until here; the
        committing process must guard gc itself (the daemon's gate does).
        """
        self._release(manifest.chunks)

    def commit(self, manifest: Manifest) -> Manifest:
        """Durably write the manifest (the version exists from now on); return it."""
        data = json.dumps(manifest.to_json(), separators=(",", ":")).encode()
        name = self.manifest_name(manifest)
        self.backend.put(name, self.keys.seal("manifest", name, data))
        self._release(manifest.chunks)
        return manifest

    def store_file(
        self,
        path: str | Path,
        cause: str,
        *,
        fd: int | None = None,
        journal_seq: int = 0,
        replaced_by: str = "",
    ) -> Manifest:
        """prepare_file then commit: store a new version of the file and return it."""
        return self.commit(
            self.prepare_file(
                path, cause, fd=fd, journal_seq=journal_seq, replaced_by=replaced_by
            )
        )

    # -- reading -----------------------------------------------------------------

    def _names(self, path: str) -> list[str]:
        return sorted(self.backend.list(f"{MANIFESTS}{self.entry_key(path)}/"))

    def load_manifest(self, name: str) -> Manifest:
        """Read and validate one manifest object; CorruptObject naming it if malformed."""
        blob = self.keys.open_sealed("manifest", name, self.backend.get(name))
        try:
            m = Manifest.from_json(json.loads(blob))
        except ValueError as e:  # includes JSON and UTF-8 decode errors
            raise CorruptObject(f"manifest {name} is malformed: {e}") from e
        if self.manifest_name(m) != name:
            raise CorruptObject(f"manifest {name} does not match its name ({m.id})")
        return m

    def versions(self, path: str) -> list[Manifest]:
        """Every version of ``path``, oldest first."""
        out = []
        for name in self._names(path):
            try:
                m = self.load_manifest(name)
            except ObjectNotFound:
                continue  # removed by retention since we listed it
            if m.path == path:  # guards against a (theoretical) entry_key collision
                out.append(m)
        return out

    def version_names(self, path: str) -> list[str]:
        """The object names of the versions of ``path``, oldest first (nothing loaded)."""
        return self._names(path)

    def version_counts(self, paths: Sequence[str]) -> dict[str, int]:
        """How many versions each of ``paths`` has: one listing of every manifest
        when there are many paths (on S3 a request per 1,000 names, instead of
        one per path), else a listing per path."""
        if len(paths) < WHOLE_LISTING_FROM:
            return {path: len(self._names(path)) for path in paths}
        by_key = self.manifests_by_entry()
        return {path: len(by_key.get(self.entry_key(path), ())) for path in paths}

    def latest(self, path: str) -> Manifest | None:
        """The version holding the newest state of ``path`` (state_of the newest
        version), or None."""
        newest = self.newest(path)
        return None if newest is None else self.state_of(newest)

    def newest(self, path: str, names: Sequence[str] | None = None) -> Manifest | None:
        """The newest version of ``path`` as stored (a restore's kept-aside version
        included), or None. ``names``: its version_names, when already listed."""
        for name in reversed(self._names(path) if names is None else names):
            try:
                m = self.load_manifest(name)
            except ObjectNotFound:
                continue
            if m.path == path:
                return m
        return None

    def state_of(self, manifest: Manifest) -> Manifest:
        """The version whose content the file held from ``manifest`` on.

        A version a restore in place kept aside (``replaced_by`` set) is what the
        file held BEFORE the restore; from its time on the file holds the version
        the restore put back, so that one is the state (and no echo of the
        restored content is stored: the engine skips it). Itself otherwise, and
        when the version put back is gone."""
        if not manifest.replaced_by:
            return manifest
        try:
            return self.find_version(manifest.path, manifest.replaced_by)
        except (NotFound, UsageError):
            return manifest

    def find_version(self, path: str, version: str) -> Manifest:
        """The version of ``path`` whose id starts with ``version`` (>= 4 hex chars).

        NotFound when none matches, UsageError when the prefix is too short,
        not hex, or matches several versions.
        """
        prefix = version.lower()
        if len(prefix) < 4 or any(c not in "0123456789abcdef" for c in prefix):
            raise UsageError(f"bad version id {version!r}: give at least 4 hex characters")
        # Only the manifests whose name carries a matching id are read (the name
        # is checked against the content when loaded): a damaged manifest of
        # another version must not keep this one from being restored.
        matches = []
        for name in self._names(path):
            if not name.rsplit("-", 1)[-1].removesuffix(".json").startswith(prefix):
                continue
            try:
                m = self.load_manifest(name)
            except ObjectNotFound:
                continue  # removed by retention since we listed it
            if m.path == path:
                matches.append(m)
        if not matches:
            raise NotFound(f"no version {version} of {path}")
        if len({m.id for m in matches}) > 1:
            ids = ", ".join(m.id for m in matches)
            raise UsageError(f"version {version} of {path} is ambiguous: matches {ids}")
        return matches[-1]

    def version_at(
        self, path: str, when: float, names: Sequence[str] | None = None
    ) -> Manifest:
        """The newest version of ``path`` made at or before ``when`` (unix seconds),
        as state_of gives it. ``names``: its version_names, when already listed.

        Names carry each version's time, so only the versions from ``when``
        back to the one found are read (a restore of a file with a thousand
        versions reads one or two manifests, not a thousand)."""
        names = self._names(path) if names is None else names
        # Names hold int(time * 1e9): a millisecond's margin, the manifest's own time decides.
        limit_ns = when * 1e9 + 1e6
        oldest: Manifest | None = None
        for name in reversed(names):
            if _name_time_ns(name) > limit_ns:
                continue
            try:
                m = self.load_manifest(name)
            except ObjectNotFound:
                continue
            if m.path != path:
                continue
            if m.time <= when:
                return self.state_of(m)
            oldest = m
        if oldest is None:
            oldest = next(self._loaded(path, names), None)
        if oldest is None:
            raise NotFound(f"no versions of {path}")
        raise NotFound(
            f"no version of {path} at or before {iso(when)}; the first is at {iso(oldest.time)}"
        )

    def _loaded(self, path: str, names: Sequence[str]) -> Iterator[Manifest]:
        """The versions of ``path`` among ``names``, oldest first, read lazily."""
        for name in names:
            try:
                m = self.load_manifest(name)
            except ObjectNotFound:
                continue
            if m.path == path:
                yield m

    def read_version(self, manifest: Manifest) -> Iterator[bytes]:
        """Yield the version's content chunk by chunk, each verified against its id.

        RestoreError names the chunk and version when a chunk is missing or
        corrupt, or — after the last chunk — when size or whole-file hash differ
        from the manifest.  Callers must consume the iterator fully before
        trusting what they wrote (write to a temp, rename only on success).
        """
        what = f"version {manifest.id} of {manifest.path}"
        hasher = blake3.blake3()
        size = 0
        for cid in manifest.chunks:
            try:
                data = self.chunks.read(cid)
            except ObjectNotFound as e:
                raise RestoreError(
                    f"cannot restore {what}: chunk {cid} is missing ({self.chunks.where(cid)})"
                ) from e
            except CorruptObject as e:
                raise RestoreError(f"cannot restore {what}: {e}") from e
            hasher.update(data)
            size += len(data)
            yield data
        if size != manifest.size or hasher.hexdigest() != manifest.hash:
            raise RestoreError(f"cannot restore {what}: rebuilt content does not match its hash")

    def entries(self) -> list[str]:
        """Paths that have at least one version, sorted.

        One listing of every manifest, then the newest manifest of each entry
        key read to learn its path (keys are hashes), several at a time.
        """
        found = self._store_pool().map(self.newest_of, self.manifests_by_entry().values())
        return sorted({m.path for m in found if m is not None})

    def manifests_by_entry(self) -> dict[str, list[str]]:
        """Entry key -> the names of its manifests, oldest first: one listing."""
        by_key: dict[str, list[str]] = {}
        for name in self.backend.list(MANIFESTS):
            by_key.setdefault(name[len(MANIFESTS) :].split("/", 1)[0], []).append(name)
        for names in by_key.values():
            names.sort()
        return by_key

    def newest_of(self, names: Sequence[str]) -> Manifest | None:
        """The newest of an entry's manifests ``names`` (oldest first) that can still
        be read (None: all gone since listed)."""
        for name in reversed(names):
            try:
                return self.load_manifest(name)
            except ObjectNotFound:
                continue  # removed by retention since we listed it
        return None

    # -- removing ----------------------------------------------------------------

    def apply_retention(self, path: str, rules: Rules | int, tz: tzinfo | None = None) -> int:
        """Delete the versions of ``path`` that retention does not keep (forget.doomed:
        the rules, the newest version, the newest a journal replay starts from and
        the newest a restore kept aside); return how many. An int is ``Rules(last=n)``.
        Chunks are left for gc()."""
        if isinstance(rules, int):
            rules = Rules(last=rules)
        if rules.last < 1:
            raise UsageError(f"retention must keep at least 1 version, not {rules.last}")

        def cause(name: str) -> str | None:
            try:
                return self.load_manifest(name).cause
            except (ObjectNotFound, CorruptObject):
                return None  # unknown: never taken for a newer base or restore

        names = self._names(path)
        doomed = forget.doomed(names, rules, cause, tz)
        if doomed:
            try:
                newest = self.load_manifest(names[-1])
            except (ObjectNotFound, CorruptObject):
                newest = None
            if newest is not None and newest.replaced_by:
                # The newest state is the version the last restore put back: keep it.
                doomed = [n for n in doomed if not _names_version(n, newest.replaced_by)]
        for name in doomed:
            self.backend.delete(name)
        return len(doomed)

    def retract(self, manifest: Manifest) -> None:
        """Delete one version (its chunks are left for gc): a version found,
        after it was stored, to hold content no program meant to keep."""
        self.backend.delete(self.manifest_name(manifest))

    def purge(self, path: str) -> int:
        """Delete every version of ``path``; return how many.  Run gc() afterwards."""
        names = self._names(path)
        for name in names:
            self.backend.delete(name)
        return len(names)

    def referenced_chunks(self) -> set[str]:
        """Every chunk a manifest names or a prepared version holds (call under
        ``_lock``). CorruptObject when a manifest cannot be read."""
        referenced = set(self._pending)
        for name in self.backend.list(MANIFESTS):
            try:
                referenced.update(self.load_manifest(name).chunks)
            except ObjectNotFound:
                continue  # deleted since listed: its chunks are no longer needed by it
        return referenced

    def gc(self, *, max_unused: float | None = None) -> int:
        """Delete chunks no manifest references (repacking partly dead packs and
        moving loose chunks into packs: repo/gc.py); return how many were removed.

        Refuses (CorruptObject) if any manifest cannot be read: deleting chunks
        on an incomplete picture of what is referenced would destroy versions.
        """
        from filetwin.repo.gc import MAX_UNUSED, collect

        unused = MAX_UNUSED if max_unused is None else max_unused
        return collect(self, max_unused=unused).chunks_removed

    def save_index(self) -> None:
        """Index the packs this process wrote that no index object names yet."""
        self.chunks.save_index()
