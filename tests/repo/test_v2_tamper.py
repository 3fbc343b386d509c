"""Tamper evidence of repository v2, encrypted (repokey) and not.

Each case damages or forges one object of a real repository on disk, then runs
the real CLI with no daemon: ``check --read-data`` must fail naming the object,
and a restore of a version that uses it must fail with a clear error (exit 1,
nothing written) instead of giving wrong bytes.

What each mode can detect:

* both: any flipped byte (packs and index objects are named by their hash,
  manifests by their id), an object swapped or moved to another name (names
  are checked against content), a pack replaced by another's bytes, an index
  object replaced by an older one, the newest version of an entry deleted
  (``check`` compares with the table's ``last_version``);
* only encrypted: a forged object. Without a key anyone can write a manifest
  that is valid in every way (id, name, chunks), so an unencrypted repository
  restores it; an encrypted one refuses what was not sealed with its key.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from filetwin.errors import CorruptObject, NotFound, RestoreError
from filetwin.policy import Policy
from filetwin.repo import Manifest, Repository
from filetwin.repo.packs import pack_name
from filetwin.table import Table
from tests.helpers import run_cli

from .v2kit import PASSPHRASE, content, flip, make_repository, objects, reopen, store


@dataclass
class Scene:
    state: Path
    loc: Path
    repo: Repository
    a1: Manifest  # first version of a (its chunks are all in a1's own packs)
    a2: Manifest  # newest version of a
    b: Manifest  # the one version of b
    data: dict[str, bytes]  # version id -> content


@pytest.fixture(params=["none", "repokey"])
def scene(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Scene:
    monkeypatch.setenv("FILETWIN_PASSWORD", PASSPHRASE)  # the CLI children inherit it
    state = tmp_path / "state"
    loc = state / "repository"
    repo = make_repository(loc, request.param, pack_size=1024 * 1024)
    files = tmp_path / "files"
    files.mkdir()
    d1, d2, db = content(1, 400_000), content(2, 300_000), content(3, 200_000)
    a1 = store(repo, files / "a", d1)
    repo.save_index()  # an older index object ...
    a2 = store(repo, files / "a", d2)
    b = store(repo, files / "b", db)
    repo.save_index()  # ... and a newer one
    table = Table(state / "table.sqlite")
    for m in (a2, b):
        table.add(m.path, Policy(), str(loc))
        table.set(m.path, last_version=m.id)
    table.close()
    data = {a1.id: d1, a2.id: d2, b.id: db}
    return Scene(state, loc, repo, a1, a2, b, data)


def check(s: Scene) -> tuple[int, str]:
    r = run_cli("--state-dir", str(s.state), "check", "--read-data")
    return r.returncode, r.stdout + r.stderr


def restore(s: Scene, m: Manifest, dest: Path) -> tuple[int, str]:
    r = run_cli(
        "--state-dir", str(s.state), "restore", m.path, "--version", m.id, "--to", str(dest)
    )
    return r.returncode, r.stdout + r.stderr


def manifest_file(s: Scene, m: Manifest) -> Path:
    return s.loc / s.repo.manifest_name(m)


def pack_file(s: Scene, m: Manifest) -> Path:
    return s.loc / pack_name(s.repo.chunks.locations()[m.chunks[0]].pack)


def index_files(s: Scene) -> list[Path]:
    """The index objects, oldest first (by mtime: each save_index made one)."""
    return sorted(objects(s.loc, "index"), key=lambda p: p.stat().st_mtime_ns)


def assert_refused(s: Scene, m: Manifest, tmp_path: Path, *names: str, cli: bool = False) -> None:
    """check fails naming every one of ``names``; a restore of ``m`` fails
    clearly (the CLI: exit 1 and nothing written; the API: an error naming
    the first of ``names``) instead of giving wrong bytes."""
    code, said = check(s)
    assert code == 1, said
    for name in names:
        assert name in said, f"{name} not named in:\n{said}"
    if not cli:
        repo = reopen(s.repo)
        with pytest.raises((RestoreError, CorruptObject, NotFound)) as e:
            b"".join(repo.read_version(repo.find_version(m.path, m.id)))
        assert names[0] in str(e.value)
        return
    dest = tmp_path / "out"
    code, said = restore(s, m, dest)
    assert code == 1, said
    assert said.startswith("filetwin: ") or "\nfiletwin: " in said, said
    assert "Traceback" not in said
    assert not dest.exists()


def assert_restores(s: Scene, m: Manifest, tmp_path: Path, *, cli: bool = False) -> None:
    """Version ``m`` restores bit for bit: through the CLI, or (faster) the API
    of a fresh process's view of the repository."""
    if not cli:
        assert b"".join(reopen(s.repo).read_version(m)) == s.data[m.id]
        return
    dest = tmp_path / "good"
    code, said = restore(s, m, dest)
    assert code == 0, said
    assert dest.read_bytes() == s.data[m.id]


def test_untouched_repository_is_healthy(scene: Scene, tmp_path: Path) -> None:
    code, said = check(scene)
    assert code == 0 and "healthy" in said, said
    assert_restores(scene, scene.a2, tmp_path, cli=True)
    for m in (scene.a1, scene.b):
        assert_restores(scene, m, tmp_path)


def test_flipped_byte_in_a_pack(scene: Scene, tmp_path: Path) -> None:
    pack = pack_file(scene, scene.a2)
    flip(pack)
    assert_refused(scene, scene.a2, tmp_path, str(pack.relative_to(scene.loc)), cli=True)
    assert_restores(scene, scene.b, tmp_path)  # other packs are unaffected


def test_pack_replaced_by_another_packs_bytes(scene: Scene, tmp_path: Path) -> None:
    pack = pack_file(scene, scene.a2)
    shutil.copyfile(pack_file(scene, scene.b), pack)
    assert_refused(scene, scene.a2, tmp_path, str(pack.relative_to(scene.loc)))


def test_flipped_byte_in_an_index_object(scene: Scene, tmp_path: Path) -> None:
    """Detected by check; a restore never trusts the damaged index: the packs'
    own authenticated trailers locate the chunks, so it gives the right bytes."""
    newest = index_files(scene)[-1]
    flip(newest)
    code, said = check(scene)
    assert code == 1 and "bad-index" in said and str(newest.relative_to(scene.loc)) in said, said
    for m in (scene.a1, scene.a2, scene.b):
        assert_restores(scene, m, tmp_path)


def test_index_object_replaced_by_an_older_one(scene: Scene, tmp_path: Path) -> None:
    older, newest = index_files(scene)
    shutil.copyfile(older, newest)
    code, said = check(scene)
    assert code == 1 and str(newest.relative_to(scene.loc)) in said, said
    for m in (scene.a1, scene.a2, scene.b):
        assert_restores(scene, m, tmp_path)


def test_flipped_byte_in_a_manifest(scene: Scene, tmp_path: Path) -> None:
    path = manifest_file(scene, scene.a2)
    # A byte inside the JSON's chunk list (for a sealed manifest: its ciphertext).
    raw = path.read_bytes()
    at = raw.find(scene.a2.chunks[0][:8].encode()) if not scene.repo.keys.encrypted else None
    flip(path, at)
    assert_refused(scene, scene.a2, tmp_path, scene.repo.manifest_name(scene.a2), cli=True)
    # The entry's other versions are still there to restore by id.
    assert_restores(scene, scene.a1, tmp_path, cli=True)


def test_manifest_swapped_with_another_entrys(scene: Scene, tmp_path: Path) -> None:
    pa, pb = manifest_file(scene, scene.a2), manifest_file(scene, scene.b)
    ba, bb = pa.read_bytes(), pb.read_bytes()
    pa.write_bytes(bb)
    pb.write_bytes(ba)
    assert_refused(
        scene,
        scene.a2,
        tmp_path,
        scene.repo.manifest_name(scene.a2),
        scene.repo.manifest_name(scene.b),
    )


def test_newest_manifest_deleted_is_a_rollback(scene: Scene, tmp_path: Path) -> None:
    """Deleting the newest version of an entry leaves a consistent repository (a
    is back at a1); only what the state directory recorded shows it."""
    manifest_file(scene, scene.a2).unlink()
    assert_refused(scene, scene.a2, tmp_path, scene.a2.id, "rolled back", cli=True)
    assert_restores(scene, scene.a1, tmp_path, cli=True)


def test_forged_manifest(scene: Scene, tmp_path: Path) -> None:
    """A forger writes a new newest version of a naming b's content. Encrypted:
    refused. Unencrypted: nothing can tell it from a real version."""
    fields = {k: v for k, v in scene.b.to_json().items() if k != "id"}
    forged = Manifest.create(**{**fields, "path": scene.a2.path, "time": scene.a2.time + 1})
    name = scene.repo.manifest_name(forged)
    assert name.rsplit("/", 1)[0] == scene.repo.manifest_name(scene.a2).rsplit("/", 1)[0]
    target = scene.loc / name
    target.write_bytes(json.dumps(forged.to_json(), separators=(",", ":")).encode())
    dest = tmp_path / "latest"
    r = run_cli("--state-dir", str(scene.state), "restore", scene.a2.path, "--to", str(dest))
    code, said = check(scene)
    if scene.repo.keys.encrypted:
        assert code == 1 and name in said and "bad-manifest" in said, said
        assert r.returncode == 1 and name in r.stderr, r.stderr
        assert not dest.exists()
    else:
        assert code == 0, said  # undetectable without a key
        assert r.returncode == 0 and dest.read_bytes() == scene.data[scene.b.id]
