"""Fixtures of the backend tests: the session's real S3 server (SeaweedFS) comes
from tests/conftest.py (one server for every folder)."""
