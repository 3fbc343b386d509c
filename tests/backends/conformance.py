"""Backend conformance suite: every Backend implementation must pass all of it.

Subclass BackendConformance and provide a ``backend`` fixture returning a fresh,
empty backend (see test_local.py).  Tests use only the Backend interface, so the
same class runs against a local directory today and S3 later.
"""

from __future__ import annotations

import os

import pytest

from filetwin.backends import Backend
from filetwin.errors import ObjectNotFound, UsageError

BAD_NAMES = [
    "",
    "..",
    "a/../b",
    "../a",
    "/abs",
    "a//b",
    "a/",
    "./a",
    "a\\b",
    "a b",
    "a/.tmp-x",
    "ü",
    "a\nb",
]


class BackendConformance:
    """The contract of backends.base.Backend, as tests."""

    @pytest.fixture
    def backend(self) -> Backend:
        raise NotImplementedError("subclasses provide a fresh, empty backend")

    def test_roundtrip(self, backend: Backend) -> None:
        backend.put("a", b"hello")
        assert backend.get("a") == b"hello"

    def test_empty_object(self, backend: Backend) -> None:
        backend.put("empty", b"")
        assert backend.exists("empty")
        assert backend.get("empty") == b""

    def test_large_object(self, backend: Backend) -> None:
        data = os.urandom(5 * 1024 * 1024)
        backend.put("big/object", data)
        assert backend.get("big/object") == data

    def test_overwrite_replaces(self, backend: Backend) -> None:
        backend.put("x/y", b"first, longer content")
        backend.put("x/y", b"second")
        assert backend.get("x/y") == b"second"
        assert list(backend.list("x/")) == ["x/y"]

    def test_get_missing(self, backend: Backend) -> None:
        with pytest.raises(ObjectNotFound, match="nope"):
            backend.get("nope")
        with pytest.raises(ObjectNotFound):
            backend.get("no/such/dir")

    def test_get_prefix_of_object_is_not_an_object(self, backend: Backend) -> None:
        backend.put("dir/obj", b"1")
        with pytest.raises(ObjectNotFound):
            backend.get("dir")
        assert not backend.exists("dir")
        with pytest.raises(ObjectNotFound):
            backend.get("dir/obj/deeper")

    def test_exists(self, backend: Backend) -> None:
        assert not backend.exists("k")
        backend.put("k", b"v")
        assert backend.exists("k")
        assert not backend.exists("k/sub")

    def test_list_prefixes(self, backend: Backend) -> None:
        names = ["chunks/ab/ab01", "chunks/ab/ab02", "chunks/cd/cd01", "manifests/k1/1.json",
                 "manifests/k10/2.json", "top"]  # fmt: skip
        for n in names:
            backend.put(n, n.encode())
        assert sorted(backend.list()) == sorted(names)
        assert sorted(backend.list("")) == sorted(names)
        assert sorted(backend.list("chunks/")) == names[:3]
        assert sorted(backend.list("chunks/ab/")) == names[:2]
        assert sorted(backend.list("chunks/a")) == names[:2]
        assert sorted(backend.list("manifests/k1/")) == ["manifests/k1/1.json"]
        assert sorted(backend.list("manifests/k1")) == names[3:5]
        assert sorted(backend.list("t")) == ["top"]
        assert list(backend.list("nothing/")) == []
        assert list(backend.list("chunks/zz/")) == []

    def test_delete(self, backend: Backend) -> None:
        backend.put("d/e", b"1")
        backend.put("d/f", b"2")
        backend.delete("d/e")
        assert not backend.exists("d/e")
        assert list(backend.list("d/")) == ["d/f"]
        with pytest.raises(ObjectNotFound):
            backend.get("d/e")

    def test_delete_missing_is_fine(self, backend: Backend) -> None:
        backend.delete("never")
        backend.delete("never/was/here")

    @pytest.mark.parametrize("name", BAD_NAMES)
    def test_bad_names_rejected(self, backend: Backend, name: str) -> None:
        with pytest.raises(UsageError, match="invalid object name"):
            backend.put(name, b"x")
        with pytest.raises(UsageError):
            backend.get(name)
        with pytest.raises(UsageError):
            backend.exists(name)
        with pytest.raises(UsageError):
            backend.delete(name)
        assert list(backend.list()) == []

    def test_list_prefix_cannot_escape(self, backend: Backend) -> None:
        with pytest.raises(UsageError):
            list(backend.list("../"))
        with pytest.raises(UsageError):
            list(backend.list("/etc/"))

    def test_list_never_shows_temp_files(self, backend: Backend) -> None:
        # Many puts of big objects: any temp file left or listed would show up.
        for i in range(20):
            backend.put(f"objs/{i:02d}", os.urandom(100_000))
        assert sorted(backend.list()) == [f"objs/{i:02d}" for i in range(20)]
        assert not any(".tmp-" in n for n in backend.list())

    def test_range_inside(self, backend: Backend) -> None:
        data = bytes(range(256)) * 40
        backend.put("r/obj", data)
        assert backend.get("r/obj", 0, 10) == data[:10]
        assert backend.get("r/obj", 1000, 2000) == data[1000:3000]
        assert backend.get("r/obj", offset=5000) == data[5000:]
        assert backend.get("r/obj", 0, len(data)) == data
        assert backend.get("r/obj", 1, 1) == data[1:2]

    def test_range_at_and_past_the_end(self, backend: Backend) -> None:
        data = b"0123456789"
        backend.put("r/ten", data)
        # Running past the end returns the bytes that exist.
        assert backend.get("r/ten", 8, 100) == b"89"
        assert backend.get("r/ten", 9) == b"9"
        # An offset at or past the end returns nothing.
        assert backend.get("r/ten", 10) == b""
        assert backend.get("r/ten", 10, 5) == b""
        assert backend.get("r/ten", 1000, 5) == b""
        assert backend.get("r/ten", 3, 0) == b""

    def test_range_of_empty_object(self, backend: Backend) -> None:
        backend.put("r/empty", b"")
        assert backend.get("r/empty", 0, 4) == b""
        assert backend.get("r/empty", 0, 0) == b""
        assert backend.get("r/empty", 7) == b""

    def test_range_of_large_object(self, backend: Backend) -> None:
        data = os.urandom(6 * 1024 * 1024)
        backend.put("r/big", data)
        assert backend.get("r/big", 3 * 1024 * 1024 + 17, 65536) == data[3145745 : 3145745 + 65536]
        assert backend.get("r/big", len(data) - 100) == data[-100:]

    def test_range_of_missing_object(self, backend: Backend) -> None:
        with pytest.raises(ObjectNotFound, match="gone"):
            backend.get("gone", 0, 10)
        with pytest.raises(ObjectNotFound):
            backend.get("gone", 5)
        with pytest.raises(ObjectNotFound):
            backend.get("gone", 0, 0)

    @pytest.mark.parametrize(("offset", "length"), [(-1, None), (-1, 5), (0, -1), (3, -10)])
    def test_negative_range_rejected(
        self, backend: Backend, offset: int, length: int | None
    ) -> None:
        backend.put("r/x", b"abc")
        with pytest.raises(UsageError, match="invalid range"):
            backend.get("r/x", offset, length)

    def test_location(self, backend: Backend) -> None:
        assert isinstance(backend.location, str) and backend.location
