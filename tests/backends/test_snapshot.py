"""ListingSnapshot: the conformance suite (its own puts and deletes keep it
coherent), then what it saves and what it does not see."""

from __future__ import annotations

from pathlib import Path

import pytest

from filetwin.backends import Backend, LocalBackend
from filetwin.backends.snapshot import ListingSnapshot
from filetwin.errors import ObjectNotFound
from tests.helpers import CountingBackend

from .conformance import BackendConformance


class TestSnapshotOfEverything(BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Backend:
        # "" as a root: every listing is answered from the snapshot.
        return ListingSnapshot(LocalBackend(tmp_path / "repo"), [""], immutable=[""])


def test_a_root_is_listed_once_and_filtered_in_memory(tmp_path: Path) -> None:
    inner = CountingBackend(tmp_path / "repo")
    for name in ("manifests/aa/1", "manifests/aa/2", "manifests/bb/1", "packs/p1"):
        inner.put(name, name.encode())
    snap = ListingSnapshot(inner, ["manifests/"], immutable=["manifests/"])
    assert sorted(snap.list("manifests/aa/")) == ["manifests/aa/1", "manifests/aa/2"]
    assert sorted(snap.list("manifests/bb/")) == ["manifests/bb/1"]
    assert list(snap.list("manifests/cc/")) == []
    assert inner.lists == ["manifests/"]
    assert list(snap.list("packs/")) == ["packs/p1"]  # outside the roots: asked each time
    assert inner.lists == ["manifests/", "packs/"]
    # Immutable objects are read once; ranges and other objects go through.
    assert snap.get("manifests/aa/1") == snap.get("manifests/aa/1") == b"manifests/aa/1"
    assert snap.get("manifests/aa/1", 2, 3) == b"nif"
    snap.get("packs/p1")
    snap.get("packs/p1")
    assert inner.gets == ["manifests/aa/1", "manifests/aa/1", "packs/p1", "packs/p1"]


def test_what_others_change_after_the_listing_is_not_seen(tmp_path: Path) -> None:
    inner = LocalBackend(tmp_path / "repo")
    inner.put("manifests/aa/1", b"1")
    snap = ListingSnapshot(inner, ["manifests/"])
    assert list(snap.list("manifests/")) == ["manifests/aa/1"]
    inner.put("manifests/aa/2", b"2")
    inner.delete("manifests/aa/1")
    assert list(snap.list("manifests/")) == ["manifests/aa/1"]
    with pytest.raises(ObjectNotFound):
        snap.get("manifests/aa/1")  # what readers of a listing already expect
    assert snap.location == inner.location
