"""The S3 backend: each object is one S3 object ``PREFIX/NAME`` in a bucket.

Location syntax: ``s3://BUCKET`` or ``s3://BUCKET/PREFIX`` (PREFIX is
'/'-separated components of [A-Za-z0-9._-], as object names are).

Requests go through obstore (Rust's object_store): they run outside the GIL,
so a daemon putting many manifests or a restore getting them in parallel
threads is not held up by the client's own CPU (botocore spent 3-4 ms of
Python per request, more than a request to a local server takes). botocore
is used only for what obstore lacks: AWS's shared config and credentials
files, profiles, SSO and roles, and creating a bucket.

Where the endpoint, region and credentials come from, first match wins:

- the explicit arguments (what the config's ``[[replica]]`` table passes);
- the endpoint: ``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``, then the
  profile's ``endpoint_url`` in ``~/.aws/config``; none: AWS itself;
- region: ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` / the profile, else us-east-1;
- credentials: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
  ``AWS_SESSION_TOKEN``, else botocore's chain (``AWS_PROFILE`` and
  ``~/.aws/credentials``, SSO, container and instance roles).  A profile
  given explicitly is used even when the environment holds keys, as botocore
  does.  No credentials anywhere is refused at the first request.

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
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import obstore
import obstore.exceptions
from obstore.store import S3Store

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
#: the S3 error code and the HTTP status in an object_store error's text
_CODE = re.compile(r"<Code>([^<]+)</Code>")
_STATUS = re.compile(r"status code: (\d{3})")

#: defaults: worst case for one call is about attempts x TRANSFER_FACTOR x timeout
#: plus backoff (exponential from 100 ms, capped at 20 s per wait).
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_ATTEMPTS = 4
#: A request may take this many times ``timeout`` in all (a 16 MiB pack at 60 s
#: needs 0.3 MiB/s); connecting, and every wait for bytes to read, get
#: ``timeout`` itself, so a stopped server fails a call quickly.
TRANSFER_FACTOR = 6


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


def _seconds(s: float) -> timedelta:
    return timedelta(seconds=s)


def _aws_config_exists() -> bool:
    return Path(os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config").expanduser().exists()


class S3Backend:
    """Backend storing each object as one S3 object ``prefix/name`` in ``bucket``.

    ``put`` is one PutObject: S3 makes it atomic (readers see the whole
    object or nothing) and acknowledges it once stored; the request's
    signature covers the SHA-256 of the body, which the server checks, so a
    put cut short or garbled on the way never becomes an object.
    Constructing the backend does no I/O unless ``create=True``: a replica
    that is down must not stop the daemon starting (settings and credentials
    are resolved at the first request).  Thread-safe.  Used only by the
    process that made it: obstore's runtime does not survive a fork, so in a
    forked child every call raises RepositoryRefused (the daemon's workers
    are started afresh, not forked).
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
        self._region_arg = region
        self._keys = (
            (access_key_id, secret_access_key, session_token)
            if access_key_id is not None and secret_access_key is not None
            else None
        )
        self._profile = profile
        self._timeout = timeout
        self._attempts = attempts
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._store_obj: S3Store | None = None
        #: (endpoint or None for AWS, region), once resolved
        self._resolved: tuple[str | None, str] | None = None
        #: what _settings resolved (a bucket's creation and the store share it)
        self._settled: tuple[dict[str, Any], Any] | None = None
        if create:
            self._create_bucket()

    # -- settings ------------------------------------------------------------------

    def _custom_endpoint(self) -> str | None:
        """The endpoint the arguments or the environment name (None: AWS, or the profile's)."""
        if self._resolved is not None:
            return self._resolved[0]
        return (
            self._endpoint_arg
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )

    def _from_botocore(self, *, creds: bool) -> tuple[Any, str | None, str | None]:
        """What botocore's chain finds: a credential provider (when ``creds``), the
        profile's region and endpoint.  UsageError for an unknown profile."""
        # Imported here: botocore takes ~0.15 s to import, which a process given
        # its credentials in the environment (or the config) never needs.
        import botocore.exceptions
        import botocore.session

        provider = None
        try:
            session = botocore.session.Session(profile=self._profile)
            if creds:
                from obstore.auth.boto3 import Boto3CredentialProvider

                try:
                    # Frozen credentials are asked for again every 5 minutes;
                    # botocore refreshes temporary ones well before they expire.
                    provider = Boto3CredentialProvider(session, ttl=timedelta(minutes=5))
                except ValueError:
                    raise RepositoryRefused(
                        f"no S3 credentials for {self.location}: set AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or ~/.aws/credentials"
                    ) from None
            region = session.get_config_variable("region")
            endpoint = _profile_endpoint(session.get_scoped_config())
        except botocore.exceptions.ProfileNotFound as e:
            raise UsageError(f"S3 repository {self.location}: {e}") from e
        except botocore.exceptions.BotoCoreError as e:
            raise RepositoryRefused(f"cannot find S3 credentials for {self.location}: {e}") from e
        return provider, region, endpoint

    def _settings(self) -> tuple[dict[str, Any], Any]:
        """The store's settings and its credential provider (fixed keys, or botocore's
        chain), resolved as the module docstring says.  UsageError for an unknown
        profile; RepositoryRefused when there are no credentials anywhere."""
        if self._settled is not None:
            return self._settled
        env = os.environ
        endpoint = self._custom_endpoint()
        region = self._region_arg or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        settings: dict[str, Any] = {}
        provider = None
        key: str | None = None
        secret: str | None = None
        token: str | None = None
        if self._keys is not None:
            key, secret, token = self._keys
        elif self._profile is None and env.get("AWS_ACCESS_KEY_ID"):
            key = env["AWS_ACCESS_KEY_ID"]
            secret = env.get("AWS_SECRET_ACCESS_KEY", "")
            token = env.get("AWS_SESSION_TOKEN") or env.get("AWS_SECURITY_TOKEN")
        if key is None or ((region is None or endpoint is None) and _aws_config_exists()):
            provider, found_region, found_endpoint = self._from_botocore(creds=key is None)
            region = region or found_region
            endpoint = endpoint or found_endpoint
        region = region or "us-east-1"
        settings["region"] = region
        if key is not None:
            provider = _StaticKeys(key, secret or "", token or None)
        if endpoint:
            # The S3-specific key: obstore reads AWS_ENDPOINT_URL_S3 from the
            # environment over a plain "endpoint", and the argument must win.
            settings["aws_endpoint_url_s3"] = endpoint
            settings["allow_http"] = endpoint.startswith("http://")
            # Custom endpoints (SeaweedFS, MinIO, ...) rarely have per-bucket DNS names.
            settings["virtual_hosted_style_request"] = False
        else:
            settings["virtual_hosted_style_request"] = True
        self._resolved = (endpoint, region)
        self._settled = settings, provider
        return self._settled

    @property
    def store(self) -> S3Store:
        """The obstore store of this backend (made at the first request)."""
        with self._lock:
            if self._pid != os.getpid():
                raise RepositoryRefused(
                    f"S3 repository {self.location} was opened by process {self._pid}; "
                    "a forked child must open its own"
                )
            if self._store_obj is None:
                settings, provider = self._settings()
                overall = self._timeout * TRANSFER_FACTOR
                try:
                    self._store_obj = S3Store(
                        self.bucket,
                        prefix=self.prefix or None,
                        config=settings,  # type: ignore[arg-type]  # (the _S3 key)
                        credential_provider=provider,
                        client_options={
                            "connect_timeout": _seconds(self._timeout),
                            "read_timeout": _seconds(self._timeout),
                            "timeout": _seconds(overall),
                        },
                        # Retried: 5xx, throttling, timeouts and connection errors,
                        # with exponential backoff (object_store's rules).
                        retry_config={
                            "max_retries": self._attempts - 1,
                            "backoff": {
                                "init_backoff": _seconds(0.1),
                                "max_backoff": _seconds(20),
                                "base": 2,
                            },
                            "retry_timeout": _seconds(self._attempts * (overall + 20)),
                        },
                    )
                except (obstore.exceptions.BaseError, ValueError) as e:
                    raise RepositoryRefused(
                        f"cannot set up the S3 client for {self.location}: {e}"
                    ) from e
            return self._store_obj

    @property
    def endpoint(self) -> str:
        """The endpoint URL requests go to."""
        self.store  # noqa: B018  (resolves the settings)
        assert self._resolved is not None
        endpoint, region = self._resolved
        return endpoint or f"https://s3.{region}.amazonaws.com"

    def __repr__(self) -> str:
        return f"S3Backend({self.location!r}, endpoint={self._custom_endpoint() or 'aws'!r})"

    def _where(self) -> str:
        return f"{self.location} at {self._custom_endpoint() or 'AWS'}"

    # -- errors --------------------------------------------------------------------

    def _translate(self, e: Exception, doing: str, name: str | None = None) -> Exception:
        """The project's exception for an obstore error (raise it ``from e``)."""
        if isinstance(e, RepositoryError | UsageError):
            return e  # from resolving the settings: already ours
        text = str(e)
        code = _code(e)
        status = int(s.group(1)) if (s := _STATUS.search(text)) else None
        what = f"object {name}" if name is not None else "objects"
        if code in _NO_BUCKET:
            return RepositoryRefused(
                f"bucket {self.bucket!r} does not exist at {self._custom_endpoint() or 'AWS'} "
                f"(cannot {doing} {what}); create it, or check the location {self.location}"
            )
        if name is not None and (code == "NoSuchKey" or isinstance(e, FileNotFoundError)):
            return ObjectNotFound(f"object {name} not found in {self.location}")
        denied = obstore.exceptions.PermissionDeniedError, obstore.exceptions.UnauthenticatedError
        if code in _REFUSED_CODES or status in (401, 403) or isinstance(e, denied):
            return self._refused(f"{doing} {what} in bucket {self.bucket!r}", code, status)
        detail = _summary(text)
        if "timed out" in text or "timeout" in text.lower():
            return RepositoryError(
                f"cannot {doing} {what} in {self._where()}: timed out ({detail})"
            )
        tag = f" [{code or status}]" if code or status else ""
        return RepositoryError(f"cannot {doing} {what} in {self._where()}: {detail}{tag}")

    def _refused(self, action: str, code: str, status: int | None) -> RepositoryRefused:
        """S3 refused ``action``: which credentials to check, and why."""
        return RepositoryRefused(
            f"S3 refused to {action} ({self._where()}): "
            f"{_REFUSED_CODES.get(code, 'access denied')} [{code or status}]; "
            "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the profile, "
            "and the bucket's policy"
        )

    def _create_bucket(self) -> None:
        """Create the bucket unless it exists (botocore: obstore has no bucket calls)."""
        import botocore.config
        import botocore.exceptions
        import botocore.session

        _, provider = self._settings()
        endpoint, region = self._resolved or (None, "us-east-1")
        # Static keys as resolved; otherwise botocore's own chain finds them again.
        keys = provider() if isinstance(provider, _StaticKeys) else {}
        session = botocore.session.Session(profile=self._profile)
        try:
            client = session.create_client(
                "s3",
                endpoint_url=endpoint,
                region_name=region,
                aws_access_key_id=keys.get("access_key_id"),
                aws_secret_access_key=keys.get("secret_access_key"),
                aws_session_token=keys.get("token"),
                config=botocore.config.Config(
                    retries={"mode": "standard", "total_max_attempts": self._attempts},
                    connect_timeout=self._timeout,
                    read_timeout=self._timeout,
                    s3={"addressing_style": "path" if endpoint else "auto"},
                ),
            )
            try:
                client.head_bucket(Bucket=self.bucket)
                return
            except botocore.exceptions.ClientError as e:
                if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                    raise
            args: dict[str, Any] = {"Bucket": self.bucket}
            if region != "us-east-1":
                args["CreateBucketConfiguration"] = {"LocationConstraint": region}
            try:
                client.create_bucket(**args)
            except botocore.exceptions.ClientError as e:
                if e.response.get("Error", {}).get("Code") == "BucketAlreadyOwnedByYou":
                    return  # created meanwhile by another process: what we wanted
                raise
        except botocore.exceptions.ClientError as e:
            err = e.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _REFUSED_CODES or status == 403:
                raise self._refused(f"create the bucket for {self.location}", code, status) from e
            raise RepositoryError(
                f"cannot create the bucket for {self.location} at {self._where()}: "
                f"{err.get('Message') or code} [{code or status}]"
            ) from e
        except botocore.exceptions.BotoCoreError as e:
            raise RepositoryError(
                f"cannot create the bucket for {self.location} at {self._where()}: {e}"
            ) from e

    # -- the five calls ------------------------------------------------------------

    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name`` (one PutObject: atomic, replaces an existing object)."""
        validate_name(name)
        try:
            # One request whatever the size: packs are ~16 MiB, and a multipart
            # upload would be four or more.
            obstore.put(self.store, name, data, use_multipart=False)
        except _ERRORS as e:
            raise self._translate(e, "store", name) from e

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return the object's bytes in [offset, offset+length) clipped to its size.

        A range is one ranged GetObject (HTTP Range): only those bytes cross the
        network.  ObjectNotFound if absent; UsageError for a negative range.
        """
        validate_name(name)
        validate_range(offset, length)
        if length == 0:
            # Nothing to read, but an absent object must still say so.
            if not self.exists(name):
                raise ObjectNotFound(f"object {name} not found in {self.location}")
            return b""
        options: Any = {}
        if length is not None:
            options["range"] = (offset, offset + length)
        elif offset:
            options["range"] = {"offset": offset}
        try:
            return bytes(obstore.get(self.store, name, options=options).bytes())
        except _ERRORS as e:
            if _code(e) == "InvalidRange":
                # 416: the object exists but starts no byte at ``offset``.
                return b""
            raise self._translate(e, "read", name) from e

    def exists(self, name: str) -> bool:
        """Whether the object exists.

        A one-byte ranged GET rather than a HEAD: a HEAD's 404 has no body, so
        it cannot tell a missing object from a missing bucket; a GET's can.
        """
        validate_name(name)
        try:
            obstore.get(self.store, name, options={"range": (0, 1)}).bytes()
        except _ERRORS as e:
            code = _code(e)
            if code == "InvalidRange":
                return True  # an empty object
            if code == "NoSuchKey" or (isinstance(e, FileNotFoundError) and not code):
                return False
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
        try:
            # object_store lists by whole path components: list the directory
            # the prefix is in, keep the names that start with it.
            for batch in obstore.list(self.store, prefix=base or None):
                for meta in batch:
                    name = str(meta["path"])
                    if not name.startswith(prefix):
                        continue
                    try:
                        validate_name(name)
                    except UsageError:
                        continue
                    yield name
        except _ERRORS as e:
            raise self._translate(e, "list") from e

    def delete(self, name: str) -> None:
        """Remove the object; an absent name is not an error (S3 answers 204 either way)."""
        validate_name(name)
        try:
            obstore.delete(self.store, name)
        except _ERRORS as e:
            if isinstance(e, FileNotFoundError) and _code(e) != "NoSuchBucket":
                return
            raise self._translate(e, "delete", name) from e


class _StaticKeys:
    """Fixed credentials, handed to obstore as a provider rather than as settings:
    obstore adds the environment's AWS_* variables to keys given as settings
    (an unrelated AWS_SESSION_TOKEN made the keys of the config refused)."""

    def __init__(self, key: str, secret: str, token: str | None) -> None:
        self._creds = {
            "access_key_id": key,
            "secret_access_key": secret,
            "token": token,
            "expires_at": None,  # never asked for again
        }

    def __call__(self) -> dict[str, Any]:
        return self._creds


#: what obstore raises: its own errors, and OSError subclasses for some (NotFound
#: is a FileNotFoundError); also our own, from resolving the settings
_ERRORS = (obstore.exceptions.BaseError, OSError, RepositoryError, UsageError)


def _code(e: Exception) -> str:
    m = _CODE.search(str(e))
    return m.group(1) if m else ""


def _summary(text: str) -> str:
    """An object_store error's text without the XML body: its first line, and the
    server's message if it sent one."""
    head = text.split("\n", 1)[0].split(": <?xml", 1)[0]
    m = re.search(r"<Message>([^<]*)</Message>", text)
    if m:
        head = f"{head}: {m.group(1)}"
    return head[:500]


def _profile_endpoint(scoped: dict[str, Any]) -> str | None:
    """The profile's ``endpoint_url``: its ``s3`` services section's, else its own."""
    s3 = scoped.get("s3")
    if isinstance(s3, dict) and s3.get("endpoint_url"):
        return str(s3["endpoint_url"])
    value = scoped.get("endpoint_url")
    return str(value) if value else None
