"""Repository keys: sealing, keyed ids, the key file, passphrases (repo/crypto.py)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from blake3 import blake3

from filetwin.backends import LocalBackend
from filetwin.errors import CorruptObject, FiletwinError, UsageError
from filetwin.repo.crypto import (
    CHEAP_KDF,
    CIPHERS,
    DEFAULT_KDF,
    SEAL_OVERHEAD,
    Keys,
    WrongPassphrase,
    change_passphrase,
    change_passphrase_object,
    create_key_file,
    key_file_mode,
    load_key_file,
    passphrase_from_env,
    read_key_file,
    write_key_file,
)


def repokey(passphrase: str = "correct horse", cipher: str = "chacha20-poly1305") -> bytes:
    return create_key_file("repokey", passphrase, kdf=CHEAP_KDF, cipher=cipher)[1]


@pytest.mark.parametrize("cipher", CIPHERS)
def test_seal_round_trip_and_shape(cipher: str) -> None:
    keys = Keys.generate("repokey", cipher)
    plain = os.urandom(1000)
    blob = keys.seal("pack", "packs/ab/abcd", plain)
    assert len(blob) == len(plain) + SEAL_OVERHEAD
    assert plain not in blob
    assert keys.open_sealed("pack", "packs/ab/abcd", blob) == plain
    # A fresh nonce each time: the same plaintext never seals to the same bytes.
    assert keys.seal("pack", "packs/ab/abcd", plain) != blob
    assert keys.seal("pack", "p", b"") != b""
    assert keys.open_sealed("pack", "p", keys.seal("pack", "p", b"")) == b""


@pytest.mark.parametrize("where", [0, 1, 13, -1, -17])
def test_flipped_byte_fails_naming_the_object(where: int) -> None:
    keys = Keys.generate("repokey")
    blob = bytearray(keys.seal("manifest", "manifests/k/0001-abc.json", b"{}" * 50))
    blob[where] ^= 0x01
    with pytest.raises(CorruptObject, match="manifest manifests/k/0001-abc.json"):
        keys.open_sealed("manifest", "manifests/k/0001-abc.json", bytes(blob))


def test_truncated_blob_fails_clearly() -> None:
    keys = Keys.generate("repokey")
    with pytest.raises(CorruptObject, match="index index/x is corrupt: 5 bytes is too short"):
        keys.open_sealed("index", "index/x", b"\x01abcd")


def test_object_under_another_name_or_kind_does_not_open() -> None:
    keys = Keys.generate("keyfile")
    blob = keys.seal("manifest", "manifests/a/1-aaaa.json", b"version A")
    with pytest.raises(CorruptObject, match="manifests/a/2-bbbb.json fails authentication"):
        keys.open_sealed("manifest", "manifests/a/2-bbbb.json", blob)
    with pytest.raises(CorruptObject, match="index manifests/a/1-aaaa.json fails auth"):
        keys.open_sealed("index", "manifests/a/1-aaaa.json", blob)


def test_object_of_another_repository_does_not_open() -> None:
    a, b = Keys.generate("repokey"), Keys.generate("repokey")
    with pytest.raises(CorruptObject, match="another key"):
        b.open_sealed("pack", "p", a.seal("pack", "p", b"data"))


def test_bad_kind_or_name_is_a_programming_error() -> None:
    keys = Keys.generate("repokey")
    with pytest.raises(ValueError):
        keys.seal("Pack", "p", b"")
    with pytest.raises(ValueError):
        keys.seal("pack", "p\0q", b"")


def test_mode_none_is_identity_and_plain_ids() -> None:
    keys = Keys.none()
    assert not keys.encrypted
    assert keys.seal("pack", "p", b"abc") == b"abc"
    assert keys.open_sealed("pack", "p", b"abc") == b"abc"
    assert keys.chunk_id(b"abc") == blake3(b"abc").hexdigest()
    assert keys.name_hash(b"/a/b") == blake3(b"/a/b").hexdigest()
    assert load_key_file(create_key_file("none")[1]).mode == "none"


def test_keyed_ids_leak_nothing() -> None:
    data = os.urandom(4096)
    a, b = Keys.generate("repokey"), Keys.generate("keyfile")
    ida, idb = a.chunk_id(data), b.chunk_id(data)
    assert len(ida) == len(idb) == 64
    assert ida != blake3(data).hexdigest() and idb != blake3(data).hexdigest()
    assert ida != idb  # same data, two repositories: unrelated ids
    assert a.chunk_id(data) == ida  # deterministic within one repository: dedup works
    name = b"/etc/passwd"
    assert a.name_hash(name) not in (a.chunk_id(name), blake3(name).hexdigest())
    assert repr(a) == "Keys(mode='repokey', cipher='chacha20-poly1305')"  # no key material


@pytest.mark.parametrize("cipher", CIPHERS)
def test_repokey_round_trip(cipher: str) -> None:
    keys, data = create_key_file("repokey", "pässword", kdf=CHEAP_KDF, cipher=cipher)
    doc = json.loads(data)
    assert doc["version"] == 1 and doc["mode"] == "repokey" and doc["cipher"] == cipher
    assert doc["kdf"]["name"] == "argon2id" and doc["kdf"]["memory_kib"] == CHEAP_KDF.memory_kib
    assert "keys" not in doc
    assert key_file_mode(data) == "repokey"
    blob = keys.seal("pack", "p", b"secret")
    # NFC and NFD spellings of the same passphrase open the same key.
    for pw in ("pässword", "pa\u0308ssword", "pässword".encode()):
        again = load_key_file(data, pw)
        assert again.open_sealed("pack", "p", blob) == b"secret"
        assert again.chunk_id(b"x") == keys.chunk_id(b"x")


def test_wrong_passphrase_is_a_clear_error_exit_1() -> None:
    data = repokey("right")
    with pytest.raises(WrongPassphrase, match="wrong passphrase") as info:
        load_key_file(data, "wrong")
    assert isinstance(info.value, FiletwinError) and info.value.exit_code == 1
    with pytest.raises(UsageError, match="FILETWIN_PASSWORD"):
        load_key_file(data, None)
    assert load_key_file(data, lambda: "right").mode == "repokey"


def test_edited_kdf_parameters_do_not_open() -> None:
    data = repokey("right")
    doc = json.loads(data)
    doc["kdf"]["iterations"] = 2
    with pytest.raises(WrongPassphrase):
        load_key_file(json.dumps(doc).encode(), "right")
    doc["kdf"]["memory_kib"] = 1 << 40
    with pytest.raises(CorruptObject, match="memory_kib"):
        load_key_file(json.dumps(doc).encode(), "right")


@pytest.mark.parametrize(
    "blob",
    [b"", b"[]", b"{not json", b'{"version": 2, "mode": "none"}', b'{"version":1,"mode":"x"}'],
)
def test_malformed_key_file(blob: bytes) -> None:
    with pytest.raises(CorruptObject, match="key file"):
        load_key_file(blob, "pw")


def test_empty_passphrase_refused_at_creation() -> None:
    with pytest.raises(UsageError, match="empty"):
        create_key_file("repokey", "", kdf=CHEAP_KDF)
    with pytest.raises(UsageError, match="passphrase"):
        create_key_file("repokey", None, kdf=CHEAP_KDF)
    with pytest.raises(UsageError, match="mode"):
        create_key_file("rot13")
    with pytest.raises(UsageError, match="cipher"):
        create_key_file("keyfile", cipher="des")


def test_change_passphrase_keeps_data_readable() -> None:
    keys, data = create_key_file("repokey", "old", kdf=CHEAP_KDF)
    blob = keys.seal("manifest", "m", b"version")
    new = change_passphrase(data, "old", "new")
    assert json.loads(new)["kdf"]["salt"] != json.loads(data)["kdf"]["salt"]
    reopened = load_key_file(new, "new")
    assert reopened.open_sealed("manifest", "m", blob) == b"version"
    assert reopened.chunk_id(b"z") == keys.chunk_id(b"z")
    with pytest.raises(WrongPassphrase):
        load_key_file(new, "old")
    with pytest.raises(UsageError, match="no passphrase"):
        change_passphrase(create_key_file("keyfile")[1], "a", "b")


def test_change_passphrase_wrong_old_changes_nothing(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "repo")
    data = repokey("right")
    backend.put("keys/repokey", data)
    before = os.stat(tmp_path / "repo" / "keys" / "repokey")
    with pytest.raises(WrongPassphrase):
        change_passphrase_object(backend, "keys/repokey", "wrong", "new")
    after = os.stat(tmp_path / "repo" / "keys" / "repokey")
    assert backend.get("keys/repokey") == data
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    change_passphrase_object(backend, "keys/repokey", "right", "new")
    assert load_key_file(backend.get("keys/repokey"), "new").mode == "repokey"


def test_keyfile_mode_file_is_private(tmp_path: Path) -> None:
    keys, data = create_key_file("keyfile")
    assert json.loads(data)["mode"] == "keyfile"
    path = tmp_path / "repo.key"
    write_key_file(path, data)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = load_key_file(read_key_file(path))
    assert loaded.open_sealed("pack", "p", keys.seal("pack", "p", b"x")) == b"x"
    os.chmod(path, 0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        read_key_file(path)
    os.chmod(path, 0o600)
    os.symlink(path, tmp_path / "link.key")
    with pytest.raises(UsageError, match="cannot open key file"):
        read_key_file(tmp_path / "link.key")


def test_passphrase_from_env(tmp_path: Path) -> None:
    pwfile = tmp_path / "pw"
    pwfile.write_bytes(b"from file\n")
    env = {"FILETWIN_PASSWORD": "from env", "FILETWIN_PASSWORD_FILE": str(pwfile)}
    assert passphrase_from_env(environ=env) == b"from env"
    assert passphrase_from_env(environ={"FILETWIN_PASSWORD_FILE": str(pwfile)}) == b"from file"
    assert passphrase_from_env(lambda: "typed", environ={}) == b"typed"
    with pytest.raises(UsageError, match="FILETWIN_PASSWORD_FILE"):
        passphrase_from_env(environ={})
    with pytest.raises(UsageError, match="cannot read"):
        passphrase_from_env(environ={"FILETWIN_PASSWORD_FILE": str(tmp_path / "absent")})


def test_default_kdf_is_memory_hard() -> None:
    assert (DEFAULT_KDF.memory_kib, DEFAULT_KDF.iterations) == (64 * 1024, 3)
    keys, data = create_key_file("repokey", "pw", kdf=DEFAULT_KDF)
    assert json.loads(data)["kdf"]["memory_kib"] == 65536
    assert load_key_file(data, "pw").chunk_id(b"a") == keys.chunk_id(b"a")
