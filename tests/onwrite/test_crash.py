"""The daemon dies during a stream of journaled writes; the daemon is down.

What "acknowledged" means here: with ``--sync batch`` a write is acknowledged
(``write()`` returns) once its record is in the kernel (written to the
segment file, not yet fdatasync'ed; a timer syncs it within the batch
window). A SIGKILL of the daemon does not lose what the kernel holds, so
every acknowledged write must be in the journal after a restart. A power
loss may lose up to the batch window; that needs ``--sync always`` and is
not what this test simulates.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import filetwin
from filetwin.repo.journal import iter_records
from filetwin.repo.moments import journal_dir
from tests.helpers import Daemon, wait_until

WRITES = 400
KILL_AFTER = 120
SIZE = 16

WRITER = textwrap.dedent(
    f"""
    import sys
    import filetwin

    client = filetwin.Client(socket_path=sys.argv[2], timeout=30)
    f = filetwin.open(sys.argv[1], "r+b", client=client)
    for i in range({WRITES}):
        f.seek(i * {SIZE})
        f.write(b"%0{SIZE - 1}d\\n" % i)
        print(i, flush=True)
    f.close()
    """
)


def payload(i: int) -> bytes:
    return b"%0*d\n" % (SIZE - 1, i)


def test_sigkill_during_journaled_writes_keeps_every_acknowledged_write(
    daemon: Daemon, files: Path
) -> None:
    f = files / "stream.log"
    f.write_bytes(b"")
    daemon.client.add(f, backup="on-write", sync="batch")
    assert daemon.client.status(f)["sync_mode"] == "batch"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(f), str(daemon.socket_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stderr is not None
    acked = -1
    for line in writer.stdout:
        acked = int(line)
        if acked + 1 >= KILL_AFTER:
            break
    assert acked + 1 == KILL_AFTER, writer.stderr.read()
    daemon.stop(signal.SIGKILL)  # the daemon, not the writer
    rest = writer.stdout.read()
    stderr = writer.stderr.read()
    assert writer.wait(60) == 0, stderr
    # The writer went on: its own writes reach the file, reported not journaled.
    assert int(rest.split()[-1]) == WRITES - 1
    assert "not journaled" in stderr
    assert f.read_bytes() == b"".join(payload(i) for i in range(WRITES))

    daemon.start()
    # The journal holds a prefix of the writes in order: every acknowledged one,
    # maybe a few more that were sent before the kill landed, nothing torn.
    jdir = journal_dir(daemon.state_dir / "journals", str(f))
    records = [r for r in iter_records(jdir)]
    journaled = 0
    for r in records:
        if r.kind != "write" or r.offset != journaled * SIZE or r.data != payload(journaled):
            break
        journaled += 1
    assert journaled >= KILL_AFTER, f"{journaled} journaled, {KILL_AFTER} acknowledged"
    assert records[journaled - 1].seq == journaled  # seq i+1 is write i

    out = files / "replayed.log"
    daemon.client.restore(f, at=f"seq:{KILL_AFTER}", to=out)
    assert out.read_bytes() == b"".join(payload(i) for i in range(KILL_AFTER))
    daemon.client.restore(f, at=f"seq:{journaled}", to=out)
    assert out.read_bytes() == b"".join(payload(i) for i in range(journaled))
    # The daemon is back: the file's newest state is rebuilt as the file is
    # (what was written while it was down is caught up by the watcher's capture).
    wait_until(
        lambda: daemon.client.restore(f, to=out) and out.read_bytes() == f.read_bytes(),
        what="the daemon to catch up with the unjournaled writes",
    )


def test_writes_happen_when_the_daemon_is_down(daemon: Daemon, files: Path) -> None:
    f = files / "down.bin"
    f.write_bytes(b"abcdef")
    daemon.client.add(f, backup="on-write")
    client = daemon.client
    daemon.stop()

    with pytest.warns(filetwin.JournalWarning, match="not journaled"):
        fh = filetwin.open(f, "r+b", client=client)
        fh.seek(1)
        assert fh.write(b"XY") == 2
        fh.close()
    assert f.read_bytes() == b"aXYdef"

    fh = filetwin.open(f, "r+b", client=client, on_unjournaled="raise")
    try:
        fh.seek(4)
        with pytest.raises(filetwin.NotJournaled, match="not journaled"):
            fh.write(b"!!")
        assert f.read_bytes() == b"aXYd!!"  # written all the same
        with pytest.raises(filetwin.NotJournaled):
            fh.truncate(3)
        assert f.read_bytes() == b"aXY"
    finally:
        fh.close()  # no stream: nothing to journal, nothing raised
    assert f.read_bytes() == b"aXY"
