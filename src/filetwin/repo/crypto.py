"""Repository keys: sealing objects (AEAD), keyed chunk ids, and the key file.


Keys
----
A repository has two random 32-byte keys, made once when it is created:

* the **master key** seals objects with an AEAD (ChaCha20-Poly1305 by default,
  AES-256-GCM selectable; the key file names the cipher);
* the **id key** keys BLAKE3 for chunk ids (``blake3(data, key=id_key)``), so an
  id says nothing about content to someone without the key: the same data in
  two repositories gets two unrelated ids, and nobody can confirm a guess.
  ``Keys.name_hash`` uses a key derived from it (BLAKE3 derive_key, context
  ``NAME_CONTEXT``) for hashes that end up in object names (entry keys).

Mode ``none`` uses the same interface: seal and open are the identity and ids
are plain BLAKE3 (today's ids), so callers need no branches.

Sealed object, byte by byte (mode repokey or keyfile)
-----------------------------------------------------
::

    offset 0    1 byte   format version, SEAL_VERSION (1)
    offset 1   12 bytes  nonce, random (os.urandom) for every seal
    offset 13   n+16     AEAD ciphertext of the n plaintext bytes, then its 16-byte tag

Associated data (authenticated, not stored)::

    b"filetwin-seal\\0" + version byte + kind (ASCII [a-z-]+) + b"\\0" + name (UTF-8)

so an object opens only as the kind and name it was sealed as: a pack renamed,
an index put in a manifest's place, a chunk moved to another id all fail to
open (CorruptObject naming the object), as does any flipped bit. What is NOT
covered by sealing: which objects exist (deletion, or rolling an object back to
an older sealed version under the same name). Names derived from content
(packs, indexes) make a roll-back of those detectable by their hash; manifests
need a list of what should exist: ``check`` compares with the newest version
the state directory recorded (repo/check.py).

Random 96-bit nonces are safe for about 2**32 seals per key (NIST SP 800-38D);
a chunk is one seal, so that is ~4 billion chunks (~300 TiB at 80 KiB each).

Key file (JSON, UTF-8; keys sorted on write)
--------------------------------------------
Mode ``repokey`` (passphrase)::

    {"version": 1, "mode": "repokey", "cipher": "chacha20-poly1305",
     "kdf": {"name": "argon2id", "memory_kib": 65536, "iterations": 3,
             "parallelism": 4, "salt": "<base64, 16 random bytes>"},
     "wrapped": "<base64 of nonce(12) | AEAD(master key | id key) | tag(16)>"}

The wrapping key is Argon2id(passphrase UTF-8 NFC, salt, params), 32 bytes; it
seals the 64 key bytes with the file's cipher and, as associated data, the
canonical JSON (sorted keys, no spaces) of version, mode, cipher and kdf (with
its salt): a key file whose parameters were edited does not open. A wrong
passphrase (or a damaged ``wrapped``) raises WrongPassphrase. Changing the
passphrase rewraps the same two keys under a fresh salt: no data is rewritten.

Mode ``keyfile`` (no passphrase: the key file itself is the secret, mode 0600,
kept outside the repository)::

    {"version": 1, "mode": "keyfile", "cipher": "chacha20-poly1305",
     "keys": {"master": "<base64, 32 bytes>", "id": "<base64, 32 bytes>"}}

Mode ``none``: ``{"version": 1, "mode": "none"}``.

Where the key file lives (an object of the repository for repokey, a 0600 file
named by the configuration for keyfile) is repo/format.py's choice.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import stat
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from filetwin.backends.base import Backend
from filetwin.errors import CorruptObject, UsageError, WrongPassphrase
from filetwin.repo.durable import write_atomic

MODES = ("none", "repokey", "keyfile")
CIPHERS = ("chacha20-poly1305", "aes-256-gcm")
#: ChaCha20-Poly1305 is the default: on this project's machines it sealed 16 MiB
#: in ~6 ms against ~13 ms for AES-256-GCM (cryptography 50, OpenSSL).
DEFAULT_CIPHER = "chacha20-poly1305"
KEY_FILE_VERSION = 1
SEAL_VERSION = 1
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
SALT_SIZE = 16
#: Bytes a seal adds to its plaintext: version, nonce, tag.
SEAL_OVERHEAD = 1 + NONCE_SIZE + TAG_SIZE
NAME_CONTEXT = "filetwin 2026 object name hashes v1"

_KIND = re.compile(r"[a-z][a-z-]*")
_AD_PREFIX = b"filetwin-seal\0"

PASSWORD_ENV = "FILETWIN_PASSWORD"
PASSWORD_FILE_ENV = "FILETWIN_PASSWORD_FILE"


@dataclass(frozen=True)
class KdfParams:
    """Argon2id parameters. The defaults are RFC 9106's second recommendation
    (64 MiB, 3 passes, 4 lanes: ~0.4 s here); tests use CHEAP_KDF."""

    memory_kib: int = 64 * 1024
    iterations: int = 3
    parallelism: int = 4

    def to_json(self) -> dict[str, Any]:
        """The parameters as the key file's ``kdf`` object (without the salt)."""
        return {
            "name": "argon2id",
            "memory_kib": self.memory_kib,
            "iterations": self.iterations,
            "parallelism": self.parallelism,
        }


DEFAULT_KDF = KdfParams()
#: For tests only: derives in well under a millisecond and protects nothing.
CHEAP_KDF = KdfParams(memory_kib=8, iterations=1, parallelism=1)


def _aead(cipher: str, key: bytes) -> ChaCha20Poly1305 | AESGCM:
    if cipher == "chacha20-poly1305":
        return ChaCha20Poly1305(key)
    if cipher == "aes-256-gcm":
        return AESGCM(key)
    raise UsageError(f"unknown cipher {cipher!r}; expected one of {', '.join(CIPHERS)}")


def _associated_data(kind: str, name: str) -> bytes:
    if not _KIND.fullmatch(kind):
        raise ValueError(f"bad object kind {kind!r}: [a-z-]+ expected")
    if "\0" in name:
        raise ValueError(f"bad object name {name!r}: contains NUL")
    return _AD_PREFIX + bytes([SEAL_VERSION]) + kind.encode() + b"\0" + name.encode()


class Keys:
    """A repository's keys: seals and opens objects, computes chunk ids.

    Thread-safe (the AEAD objects are stateless). ``Keys.none()`` is the
    unencrypted repository: identity seal/open and plain BLAKE3 ids.
    """

    def __init__(
        self, mode: str, master: bytes | None, id_key: bytes | None,
        cipher: str = DEFAULT_CIPHER,
    ) -> None:  # fmt: skip
        if mode not in MODES:
            raise UsageError(f"unknown encryption mode {mode!r}; expected one of {MODES}")
        self.mode = mode
        self.cipher = cipher
        if mode == "none":
            self._master = self._id_key = self._name_key = None
            self._aead: ChaCha20Poly1305 | AESGCM | None = None
            return
        if master is None or id_key is None or len(master) != KEY_SIZE or len(id_key) != KEY_SIZE:
            raise ValueError("an encrypted repository needs two 32-byte keys")
        self._master, self._id_key = master, id_key
        self._name_key = blake3.blake3(id_key, derive_key_context=NAME_CONTEXT).digest()
        self._aead = _aead(cipher, master)

    def __repr__(self) -> str:  # never print key material
        return f"Keys(mode={self.mode!r}, cipher={self.cipher!r})"

    @classmethod
    def none(cls) -> Keys:
        """Keys of an unencrypted repository."""
        return cls("none", None, None)

    @classmethod
    def generate(cls, mode: str, cipher: str = DEFAULT_CIPHER) -> Keys:
        """Fresh random keys for a new repository of ``mode``."""
        if mode == "none":
            return cls.none()
        return cls(mode, secrets.token_bytes(KEY_SIZE), secrets.token_bytes(KEY_SIZE), cipher)

    @property
    def encrypted(self) -> bool:
        """Whether objects are sealed (mode is not ``none``)."""
        return self._aead is not None

    def seal(self, kind: str, name: str, plaintext: bytes | memoryview) -> bytes:
        """The sealed form of ``plaintext`` as object ``name`` of ``kind`` (see module doc).

        Identity (a bytes copy) in mode ``none``.
        """
        if self._aead is None:
            return bytes(plaintext)
        nonce = secrets.token_bytes(NONCE_SIZE)
        ct = self._aead.encrypt(nonce, bytes(plaintext), _associated_data(kind, name))
        return bytes([SEAL_VERSION]) + nonce + ct

    def open_sealed(self, kind: str, name: str, blob: bytes | memoryview) -> bytes:
        """The plaintext sealed in ``blob`` as ``kind`` ``name``.

        CorruptObject naming the object when it was modified, damaged, sealed as
        another object or with another key. Identity in mode ``none``.
        """
        if self._aead is None:
            return bytes(blob)
        blob = bytes(blob)
        if len(blob) < SEAL_OVERHEAD:
            raise CorruptObject(f"{kind} {name} is corrupt: {len(blob)} bytes is too short")
        if blob[0] != SEAL_VERSION:
            raise CorruptObject(f"{kind} {name} is corrupt: unknown seal version {blob[0]}")
        try:
            return self._aead.decrypt(
                blob[1 : 1 + NONCE_SIZE], blob[1 + NONCE_SIZE :], _associated_data(kind, name)
            )
        except InvalidTag as e:
            raise CorruptObject(
                f"{kind} {name} fails authentication: modified, damaged, "
                "moved from another name or sealed with another key"
            ) from e

    def chunk_id(self, data: bytes | memoryview) -> str:
        """The id of a chunk: keyed BLAKE3 hex when encrypted, plain BLAKE3 hex otherwise."""
        if self._id_key is None:
            return blake3.blake3(data).hexdigest()
        return blake3.blake3(data, key=self._id_key).hexdigest()

    def name_hash(self, data: bytes) -> str:
        """A hash for object names (e.g. an entry's path): keyed by a key derived
        from the id key when encrypted, plain BLAKE3 otherwise. 64 hex."""
        if self._name_key is None:
            return blake3.blake3(data).hexdigest()
        return blake3.blake3(data, key=self._name_key).hexdigest()


# -- the key file ------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any, what: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise CorruptObject(f"key file is malformed: {what} is not a string")
    try:
        out = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise CorruptObject(f"key file is malformed: {what} is not base64") from e
    if size is not None and len(out) != size:
        raise CorruptObject(f"key file is malformed: {what} is {len(out)} bytes, not {size}")
    return out


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    # NFC: the same visible passphrase typed on two systems gives the same bytes.
    if isinstance(passphrase, str):
        return unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return passphrase


def _derive(passphrase: str | bytes, salt: bytes, kdf: KdfParams) -> bytes:
    return hash_secret_raw(
        _passphrase_bytes(passphrase), salt, time_cost=kdf.iterations,
        memory_cost=kdf.memory_kib, parallelism=kdf.parallelism, hash_len=KEY_SIZE,
        type=Type.ID,
    )  # fmt: skip


def _canonical(d: Mapping[str, Any]) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()


def _wrap(keys: Keys, passphrase: str | bytes, kdf: KdfParams) -> dict[str, Any]:
    if not _passphrase_bytes(passphrase):
        raise UsageError("the passphrase is empty: choose a non-empty one")
    assert keys._master is not None and keys._id_key is not None
    salt = secrets.token_bytes(SALT_SIZE)
    header = {
        "version": KEY_FILE_VERSION, "mode": "repokey", "cipher": keys.cipher,
        "kdf": {**kdf.to_json(), "salt": _b64(salt)},
    }  # fmt: skip
    nonce = secrets.token_bytes(NONCE_SIZE)
    wrapped = _aead(keys.cipher, _derive(passphrase, salt, kdf)).encrypt(
        nonce, keys._master + keys._id_key, _canonical(header)
    )
    return {**header, "wrapped": _b64(nonce + wrapped)}


def create_key_file(
    mode: str,
    passphrase: str | bytes | None = None,
    *,
    kdf: KdfParams = DEFAULT_KDF,
    cipher: str = DEFAULT_CIPHER,
) -> tuple[Keys, bytes]:
    """New random keys for a repository of ``mode`` and the key file that holds them.

    ``repokey`` needs a non-empty passphrase (UsageError otherwise); ``keyfile``
    and ``none`` take none. The caller stores the bytes (``write_key_file`` for
    a local 0600 file).
    """
    if mode not in MODES:
        raise UsageError(f"unknown encryption mode {mode!r}; expected one of {', '.join(MODES)}")
    _aead(cipher, bytes(KEY_SIZE))  # UsageError for an unknown cipher, before anything else
    keys = Keys.generate(mode, cipher)
    doc: dict[str, Any]
    if mode == "none":
        doc = {"version": KEY_FILE_VERSION, "mode": "none"}
    elif mode == "keyfile":
        assert keys._master is not None and keys._id_key is not None
        doc = {
            "version": KEY_FILE_VERSION, "mode": "keyfile", "cipher": cipher,
            "keys": {"master": _b64(keys._master), "id": _b64(keys._id_key)},
        }  # fmt: skip
    else:
        if passphrase is None:
            raise UsageError("a repokey repository needs a passphrase")
        doc = _wrap(keys, passphrase, kdf)
    return keys, _dump(doc)


def export_keys(keys: Keys) -> bytes:
    """``keys`` as an unwrapped key file (mode ``keyfile``, or ``none``): how the
    daemon hands unlocked keys to its worker processes over their private pipe.
    Secret: never write it anywhere but a 0600 file the user asked for."""
    if keys._master is None or keys._id_key is None:
        return _dump({"version": KEY_FILE_VERSION, "mode": "none"})
    return _dump(
        {
            "version": KEY_FILE_VERSION, "mode": "keyfile", "cipher": keys.cipher,
            "keys": {"master": _b64(keys._master), "id": _b64(keys._id_key)},
        }
    )  # fmt: skip


def _dump(doc: Mapping[str, Any]) -> bytes:
    return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()


def _parse(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as e:  # JSON and UTF-8 errors
        raise CorruptObject(f"key file is malformed: {e}") from e
    if not isinstance(doc, dict):
        raise CorruptObject("key file is malformed: not a JSON object")
    if doc.get("version") != KEY_FILE_VERSION:
        raise CorruptObject(f"key file has unsupported version {doc.get('version')!r}")
    if doc.get("mode") not in MODES:
        raise CorruptObject(f"key file has unknown mode {doc.get('mode')!r}")
    if doc["mode"] != "none" and doc.get("cipher") not in CIPHERS:
        raise CorruptObject(f"key file has unknown cipher {doc.get('cipher')!r}")
    return doc


def key_file_mode(data: bytes) -> str:
    """The encryption mode a key file declares (to know whether a passphrase is needed)."""
    return str(_parse(data)["mode"])


_KDF_LIMITS = {"memory_kib": 4 * 1024 * 1024, "iterations": 64, "parallelism": 64}


def _kdf_of(doc: Mapping[str, Any]) -> tuple[KdfParams, bytes]:
    kdf = doc.get("kdf")
    if not isinstance(kdf, dict) or kdf.get("name") != "argon2id":
        raise CorruptObject("key file is malformed: kdf is not argon2id")
    values: list[int] = []
    for k in ("memory_kib", "iterations", "parallelism"):
        v = kdf.get(k)
        # Bounded: an edited key file must not make us allocate terabytes.
        if type(v) is not int or not 0 < v <= _KDF_LIMITS[k]:
            raise CorruptObject(f"key file is malformed: bad argon2id {k}")
        values.append(v)
    memory_kib, iterations, parallelism = values
    return KdfParams(memory_kib, iterations, parallelism), _unb64(kdf.get("salt"), "kdf salt")


def load_key_file(
    data: bytes, passphrase: str | bytes | Callable[[], str | bytes] | None = None
) -> Keys:
    """The Keys a key file holds.

    ``passphrase`` (a value, or a callable asked only when one is needed) opens
    a ``repokey`` file: WrongPassphrase when it does not, UsageError when none
    was given. CorruptObject for a malformed file.
    """
    doc = _parse(data)
    mode = doc["mode"]
    if mode == "none":
        return Keys.none()
    cipher = doc["cipher"]
    if mode == "keyfile":
        k = doc.get("keys")
        if not isinstance(k, dict):
            raise CorruptObject("key file is malformed: no keys")
        return Keys(
            mode, _unb64(k.get("master"), "master key", KEY_SIZE),
            _unb64(k.get("id"), "id key", KEY_SIZE), cipher,
        )  # fmt: skip
    kdf, salt = _kdf_of(doc)
    blob = _unb64(doc.get("wrapped"), "wrapped keys", NONCE_SIZE + 2 * KEY_SIZE + TAG_SIZE)
    if callable(passphrase):
        passphrase = passphrase()
    if passphrase is None:
        raise UsageError(
            f"the repository is encrypted: give its passphrase ({PASSWORD_ENV}, "
            f"{PASSWORD_FILE_ENV} or the prompt)"
        )
    header = {k: doc[k] for k in ("version", "mode", "cipher", "kdf")}
    try:
        keys = _aead(cipher, _derive(passphrase, salt, kdf)).decrypt(
            blob[:NONCE_SIZE], blob[NONCE_SIZE:], _canonical(header)
        )
    except InvalidTag as e:
        raise WrongPassphrase(
            "wrong passphrase: it does not open the repository key "
            "(or the key file's parameters or wrapped keys were altered)"
        ) from e
    return Keys(mode, keys[:KEY_SIZE], keys[KEY_SIZE:], cipher)


def change_passphrase(
    data: bytes, old: str | bytes, new: str | bytes, *, kdf: KdfParams | None = None
) -> bytes:
    """A key file holding the same keys as ``data`` under the passphrase ``new``.

    The keys are unchanged, so every object stays readable and nothing else is
    rewritten. A fresh salt is drawn; ``kdf`` defaults to the file's own
    parameters. WrongPassphrase (and nothing returned) when ``old`` does not
    open ``data``; UsageError for a file that has no passphrase.
    """
    doc = _parse(data)
    if doc["mode"] != "repokey":
        raise UsageError(f"a {doc['mode']} repository has no passphrase to change")
    keys = load_key_file(data, old)
    return _dump(_wrap(keys, new, kdf if kdf is not None else _kdf_of(doc)[0]))


# -- local key files and passphrases -----------------------------------------------


def write_key_file(path: Path, data: bytes) -> None:
    """Write a key file atomically and durably with mode 0600 (its directory must exist)."""
    write_atomic(Path(path), data, 0o600)


def read_key_file(path: Path) -> bytes:
    """Read a local key file; refuse one others can read or write (UsageError: fix its mode).

    The final component is not followed if it is a symlink.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise UsageError(f"cannot open key file {path}: {e.strerror or e}") from e
    with os.fdopen(fd, "rb") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if mode & 0o077:
            raise UsageError(f"key file {path} is open to others (mode {mode:04o}): chmod 600 it")
        return f.read()


def change_passphrase_object(
    backend: Backend, name: str, old: str | bytes, new: str | bytes,
    *, kdf: KdfParams | None = None,
) -> None:  # fmt: skip
    """change_passphrase on a key file stored as object ``name`` of ``backend`` (a
    repokey repository keeps it there), replaced by one atomic put only on
    success: a wrong ``old`` raises WrongPassphrase and leaves it untouched."""
    backend.put(name, change_passphrase(backend.get(name), old, new, kdf=kdf))


def passphrase_from_env(
    prompt: Callable[[], str | bytes] | None = None,
    environ: Mapping[str, str] | None = None,
) -> bytes:
    """The passphrase, from the first of: FILETWIN_PASSWORD (its value),
    FILETWIN_PASSWORD_FILE (the file's content less one trailing newline), or
    ``prompt()`` (e.g. getpass). UsageError when none of them gives one.

    The password file is named by the operator (not a path an unprivileged
    user controls) and is followed if it is a symlink, as secret stores mount them.
    """
    env = os.environ if environ is None else environ
    value = env.get(PASSWORD_ENV)
    if value is not None:
        return _passphrase_bytes(value)
    file = env.get(PASSWORD_FILE_ENV)
    if file:
        try:
            with open(file, "rb") as f:
                data = f.read()
        except OSError as e:
            raise UsageError(f"cannot read {PASSWORD_FILE_ENV} {file}: {e.strerror or e}") from e
        data = data[:-2] if data.endswith(b"\r\n") else data.removesuffix(b"\n")
        try:
            return _passphrase_bytes(data.decode("utf-8"))
        except UnicodeDecodeError:
            return data  # not UTF-8: the bytes as they are
    if prompt is not None:
        return _passphrase_bytes(prompt())
    raise UsageError(
        f"the repository is encrypted: set {PASSWORD_ENV} or {PASSWORD_FILE_ENV}, "
        "or run on a terminal to be asked"
    )
