"""Fixtures of the backend tests: the session's real S3 server (SeaweedFS)."""

from tests.s3server import s3_server  # noqa: F401  (the session fixture, see tests/s3server.py)
