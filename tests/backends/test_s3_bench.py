"""The S3 benchmark's harness (bench/s3.py) runs: one quick run on the session's server."""

from __future__ import annotations

from bench import s3 as bench_s3
from filetwin.backends.s3 import S3Backend
from tests.s3server import S3Server, fresh_location


def test_bench_s3_quick_run(s3_server: S3Server) -> None:
    backend = S3Backend(fresh_location(s3_server), **s3_server.backend_args())
    row = bench_s3.one_run(backend, quick=True, run=0)
    expected = {f"{k}_{s}" for k in ("put", "get") for s in bench_s3.SIZES}
    assert set(row) == expected | {"range_get_4k_of_16m"}
    assert all(v["ms"] > 0 and v["mib_s"] > 0 for v in row.values())
    assert list(backend.list()) == []  # the run cleans up after itself
    text = bench_s3.table({"figures": {k: {m: {"median": v[m], "min": v[m], "max": v[m]}
                                            for m in v} for k, v in row.items()}})  # fmt: skip
    assert "| put_16m |" in text
