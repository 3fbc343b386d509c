"""The S3 backend: each object is one S3 object ``PREFIX/NAME`` in a bucket.

Location syntax: ``s3://BUCKET`` or ``s3://BUCKET/PREFIX`` (PREFIX is
'/'-separated components of [A-Za-z0-9._-], as object names are).

Where the endpoint, region and credentials come from, first match wins:

- the explicit arguments (what the config's ``[[replica]]`` table passes);
- the endpoint: ``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``, then the
  profile's ``endpoint_url`` in ``~/.aws/config`` (botocore reads all three);
  none: AWS itself;
- region: ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` / the profile, else us-east-1;
- credentials: botocore's chain (``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and
  ``~/.aws/credentials``, SSO, container and instance roles).

Errors are translated here and nowhere else: a missing object raises
ObjectNotFound; refused credentials, denied access and a missing bucket raise
RepositoryRefused (not retryable, the message names the bucket, the endpoint
and the cause); everything else (5xx after the retries, throttling after the
retries, timeouts, refused connections) raises RepositoryError (retryable).

The bucket is never created implicitly: ``create=True`` (what ``init`` of a
new repository passes) creates it when missing; without it a missing bucket is
RepositoryRefused, because a typo in a bucket name must not quietly start a
new, empty repository somewhere else.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.exceptions
from botocore.config import Config

from filetwin.backends.base import validate_name, validate_range
from filetwin.errors import ObjectNotFound, RepositoryError, RepositoryRefused, UsageError

#: S3 bucket naming rules (the common subset every S3 server accepts).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")

#: error codes meaning "these credentials or this identity are not accepted"
_REFUSED_CODES = {
    "AccessDenied": "access denied",
    "AllAccessDisabled": "access denied",
    "InvalidAccessKeyId": "the access key id was refused (no such key)",
    "SignatureDoesNotMatch": "the credentials were refused (the secret key does not match)",
    "InvalidToken": "the credentials were refused (invalid session token)",
    "ExpiredToken": "the credentials were refused (the session token has expired)",
    "TokenRefreshRequired": "the credentials were refused (the session token has expired)",
    "AccountProblem": "access denied (account problem)",
    "InvalidBucketName": "the bucket name is invalid",
}
_NO_BUCKET = {"NoSuchBucket"}
_NO_KEY = {"NoSuchKey", "NotFound", "404"}

#: defaults: worst case for one call is about attempts x (connect + read timeout)
#: plus backoff (botocore's standard mode: random, capped at 20 s per wait).
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_ATTEMPTS = 4


def parse_location(location: str) -> tuple[str, str]:
    """Split ``s3://bucket[/prefix]`` into (bucket, prefix); UsageError naming the problem."""
    if not location.startswith("s3://"):
        raise UsageError(f"not an S3 location: {location!r} (expected s3://bucket/prefix)")
    parts = urlsplit(location)
    if parts.query or parts.fragment or "@" in parts.netloc or ":" in parts.netloc:
        raise UsageError(f"invalid S3 location {location!r}: expected s3://bucket/prefix")
    bucket = parts.netloc
    if not bucket:
        raise UsageError(f"S3 location {location!r} names no bucket")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise UsageError(
            f"invalid bucket name {bucket!r} in {location!r}: 3-63 characters of "
            "a-z, 0-9, '.' and '-', starting and ending with a letter or digit"
        )
    prefix = parts.path.strip("/")
    if prefix:
        try:
            validate_name(prefix)
        except UsageError as e:
            raise UsageError(f"invalid prefix in S3 location {location!r}: {e}") from e
    return bucket, prefix


class S3Backend:
    """Backend storing each object as one S3 object ``prefix/name`` in ``bucket``.

    ``put`` is one PutObject: S3 makes it atomic (readers see the whole
    object or nothing) and acknowledges it once stored; botocore sends a
    CRC32 of the body that the server checks, so a put cut short never
    becomes an object.  Constructing the backend does no I/O unless
    ``create=True``: a replica that is down must not stop the daemon starting.
    Thread-safe; after a fork the child makes its own client (connections
    are not shared across processes).
    """

    def __init__(
        self,
        location: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        attempts: int = DEFAULT_ATTEMPTS,
        create: bool = False,
    ) -> None:
        self.bucket, self.prefix = parse_location(location)
        self.location = (
            f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        )
        if timeout <= 0:
            raise UsageError(f"S3 timeout must be > 0 seconds, not {timeout!r}")
        if attempts < 1:
            raise UsageError(f"S3 attempts must be >= 1, not {attempts!r}")
        if (access_key_id is None) != (secret_access_key is None):
            raise UsageError("S3 credentials need both an access key id and a secret access key")
        if endpoint_url is not None:
            ep = urlsplit(endpoint_url)
            if ep.scheme not in ("http", "https") or not ep.netloc:
                raise UsageError(
                    f"invalid S3 endpoint {endpoint_url!r}: expected http(s)://host[:port]"
                )
        self._endpoint_arg = endpoint_url
        self._session_args = {
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
            "aws_session_token": session_token,
            "profile_name": profile,
        }
        self._region = region
        self._config = Config(
            # standard mode retries 5xx, throttling (429, SlowDown, ...) and
            # connection errors and timeouts, with exponential backoff and jitter.
            retries={"mode": "standard", "total_max_attempts": attempts},
            connect_timeout=timeout,
            read_timeout=timeout,
            # Custom endpoints (SeaweedFS, MinIO, ...) rarely have per-bucket DNS names.
            s3={"addressing_style": "path" if self._custom_endpoint() else "auto"},
            # What filetwin reads is verified on its own (packs and index objects
            # by their BLAKE3 names, sealed objects by their AEAD, journal records
            # by their checksums): the response's CRC cost ~5% of a restore.
            # Uploads keep theirs: the server checks what it stores.
            response_checksum_validation="when_required",
        )
        self._lock = threading.Lock()
        self._client_pid = -1
        self._client_obj: Any = None
        if create:
            self._create_bucket()

    def _custom_endpoint(self) -> str | None:
        return (
            self._endpoint_arg
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )

    @property
    def client(self) -> Any:
        """The boto3 S3 client of this process (made on first use, again after a fork)."""
        with self._lock:
            if self._client_obj is None or self._client_pid != os.getpid():
                try:
                    session = boto3.session.Session(**self._session_args)
                    region = self._region or session.region_name or "us-east-1"
                    self._client_obj = session.client(
                        "s3",
                        endpoint_url=self._custom_endpoint(),
                        region_name=region,
                        config=self._config,
                    )
                except botocore.exceptions.ProfileNotFound as e:
                    raise UsageError(f"S3 repository {self.location}: {e}") from e
                except (botocore.exceptions.BotoCoreError, ValueError) as e:
                    raise RepositoryRefused(
                        f"cannot set up the S3 client for {self.location}: {e}"
                    ) from e
                self._client_pid = os.getpid()
            return self._client_obj

    @property
    def endpoint(self) -> str:
        """The endpoint URL requests go to."""
        return str(self.client.meta.endpoint_url)

    def __repr__(self) -> str:
        return f"S3Backend({self.location!r}, endpoint={self._custom_endpoint() or 'aws'!r})"

    def _key(self, name: str) -> str:
        validate_name(name)
        return f"{self.prefix}/{name}" if self.prefix else name

    def _where(self) -> str:
        return f"{self.location} at {self._custom_endpoint() or 'AWS'}"

    def _translate(self, e: Exception, doing: str, name: str | None = None) -> Exception:
        """The project's exception for a botocore error (raise it ``from e``)."""
        what = f"object {name}" if name is not None else "objects"
        if isinstance(e, botocore.exceptions.ClientError):
            err = e.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            detail = err.get("Message") or code
            if code in _NO_BUCKET:
                return RepositoryRefused(
                    f"bucket {self.bucket!r} does not exist at {self._custom_endpoint() or 'AWS'} "
                    f"(cannot {doing} {what}); create it, or check the location {self.location}"
                )
            if code in _NO_KEY and name is not None:
                return ObjectNotFound(f"object {name} not found in {self.location}")
            if code in _REFUSED_CODES or status == 403:
                cause = _REFUSED_CODES.get(code, "access denied")
                return RepositoryRefused(
                    f"S3 refused to {doing} {what} in bucket {self.bucket!r} "
                    f"({self._where()}): {cause} [{code or status}]; "
                    "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the profile, "
                    "and the bucket's policy"
                )
            return RepositoryError(
                f"cannot {doing} {what} in {self._where()}: {detail} [{code or status}]"
            )
        if isinstance(
            e, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
        ):
            return RepositoryRefused(
                f"no S3 credentials for {self.location}: set AWS_ACCESS_KEY_ID and "
                f"AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or ~/.aws/credentials ({e})"
            )
        if isinstance(
            e, botocore.exceptions.ConnectTimeoutError | botocore.exceptions.ReadTimeoutError
        ):
            return RepositoryError(f"cannot {doing} {what} in {self._where()}: timed out ({e})")
        return RepositoryError(f"cannot {doing} {what} in {self._where()}: {e}")

    def _create_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except botocore.exceptions.ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status != 404:
                raise self._translate(e, "open the bucket of") from e
        except botocore.exceptions.BotoCoreError as e:
            raise self._translate(e, "open the bucket of") from e
        args: dict[str, Any] = {"Bucket": self.bucket}
        region = self.client.meta.region_name
        if region and region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(**args)
        except botocore.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("BucketAlreadyOwnedByYou",):
                return  # created meanwhile by another process: what we wanted
            raise self._translate(e, "create the bucket for") from e
        except botocore.exceptions.BotoCoreError as e:
            raise self._translate(e, "create the bucket for") from e

    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name`` (one PutObject: atomic, replaces an existing object)."""
        key = self._key(name)
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            raise self._translate(e, "store", name) from e

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return the object's bytes in [offset, offset+length) clipped to its size.

        A range is one ranged GetObject (HTTP Range): only those bytes cross the
        network.  ObjectNotFound if absent; UsageError for a negative range.
        """
        key = self._key(name)
        validate_range(offset, length)
        if length == 0:
            # Nothing to read, but an absent object must still say so.
            if not self.exists(name):
                raise ObjectNotFound(f"object {name} not found in {self.location}")
            return b""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if length is not None:
            args["Range"] = f"bytes={offset}-{offset + length - 1}"
        elif offset:
            args["Range"] = f"bytes={offset}-"
        try:
            response = self.client.get_object(**args)
            return bytes(response["Body"].read())
        except botocore.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") == "InvalidRange":
                # 416: the object exists but starts no byte at ``offset``.
                return b""
            raise self._translate(e, "read", name) from e
        except botocore.exceptions.BotoCoreError as e:
            raise self._translate(e, "read", name) from e

    def exists(self, name: str) -> bool:
        """Whether the object exists.

        A one-byte ranged GET rather than a HEAD: a HEAD's 404 has no body, so
        it cannot tell a missing object from a missing bucket; a GET's can.
        """
        key = self._key(name)
        try:
            self.client.get_object(Bucket=self.bucket, Key=key, Range="bytes=0-0")["Body"].read()
        except botocore.exceptions.ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            if code == "InvalidRange":
                return True  # an empty object
            if code in _NO_KEY:
                return False
            raise self._translate(e, "look up", name) from e
        except botocore.exceptions.BotoCoreError as e:
            raise self._translate(e, "look up", name) from e
        return True

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield every object name starting with ``prefix`` (any order).

        Keys under the location that are not valid object names (directory
        markers some servers show, objects other tools put there) are skipped:
        they are not ours and could not be read through this interface.
        """
        base = prefix.rpartition("/")[0]
        if base:
            validate_name(base)
        root = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root + prefix):
                for obj in page.get("Contents", ()):
                    name = str(obj["Key"])[len(root) :]
                    try:
                        validate_name(name)
                    except UsageError:
                        continue
                    yield name
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            raise self._translate(e, "list") from e

    def delete(self, name: str) -> None:
        """Remove the object; an absent name is not an error (S3 answers 204 either way)."""
        key = self._key(name)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") in _NO_KEY:
                return
            raise self._translate(e, "delete", name) from e
        except botocore.exceptions.BotoCoreError as e:
            raise self._translate(e, "delete", name) from e
