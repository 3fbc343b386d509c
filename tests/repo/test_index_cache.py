"""A remote repository's index objects are cached in the state directory: read
from there next time, and a damaged cached copy falls back to the object."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from filetwin.repo.opening import open_repository
from tests.s3server import S3Server, fresh_location


@pytest.mark.usefixtures("s3_env")
def test_index_objects_are_cached_and_a_damaged_copy_is_not_trusted(
    s3_server: S3Server, tmp_path: Path
) -> None:
    location = fresh_location(s3_server)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    repo = open_repository(location, state_dir=state, create_mode="none")
    files = []
    for i in range(3):
        f = tmp_path / f"f{i}"
        f.write_bytes(os.urandom(200_000))
        files.append((repo.store_file(f, "manual"), f.read_bytes()))
    assert repo.chunks.save_index() is not None
    cache = state / "cache"
    cached = [p for p in cache.rglob("*") if p.is_file()]
    assert cached == []  # written on read, not on put

    again = open_repository(location, state_dir=state)
    again.chunks.load()
    cached = [p for p in cache.rglob("*") if p.is_file()]
    assert len(cached) == 1 and cached[0].parent.name == "index"
    assert oct(cached[0].stat().st_mode & 0o777) == "0o600"

    cached[0].write_bytes(b"damaged")  # a bad cached copy: the object is read instead
    third = open_repository(location, state_dir=state)
    for manifest, data in files:
        assert b"".join(third.read_version(manifest)) == data
    assert third.chunks.damaged == {}
    assert cached[0].read_bytes() != b"damaged"  # the cached copy was put right
