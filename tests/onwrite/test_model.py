"""Model-based test of on-write: every recorded moment restores byte for byte.

Random writes (also past the end of the file), overwrites, appends (``ab``
reopen), truncates (shrinking and growing), closes, reopens and marks go
through ``filetwin.open``; a bytes model follows them. After each step the
journal's last seq and the model's content are recorded; at the end of each
run every recorded moment is restored (``--at seq:N``, and marks by name) to a
temporary file and compared with the model.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import filetwin
from filetwin.fileobj import JournaledFile
from tests.helpers import Daemon

_counter = itertools.count()


class OnWriteModel(RuleBasedStateMachine):
    daemon: Daemon
    root: Path

    def __init__(self) -> None:
        super().__init__()
        self.client = self.daemon.client
        self.path = self.root / f"model-{next(_counter)}.bin"
        self.model = bytearray()
        self.handle: IO[bytes] | None = None
        self.handle_mode = ""
        self.moments: list[tuple[int, bytes]] = []
        self.marks: dict[str, bytes] = {}
        self.steps = 0

    # set-up ------------------------------------------------------------
    @initialize(initial=st.binary(max_size=5000))
    def add_entry(self, initial: bytes) -> None:
        self.path.write_bytes(initial)
        self.model = bytearray(initial)
        self.client.add(self.path, backup="on-write")
        self.moments.append((0, initial))

    def _record(self) -> None:
        seq = self.client.journal(self.path)["last_seq"] or 0
        status_seq = self.client.status(self.path)["journal_seq"]
        assert status_seq >= seq, (status_seq, seq)
        self.moments.append((seq, bytes(self.model)))
        self.steps += 1

    # handles -----------------------------------------------------------
    @precondition(lambda self: self.handle is None)
    @rule()
    def open_rw(self) -> None:
        self.handle = filetwin.open(self.path, "r+b", client=self.client)
        self.handle_mode = "r+b"

    @precondition(lambda self: self.handle is None)
    @rule()
    def open_append(self) -> None:
        self.handle = filetwin.open(self.path, "ab", client=self.client)
        self.handle_mode = "ab"

    @precondition(lambda self: self.handle is not None)
    @rule()
    def close(self) -> None:
        assert self.handle is not None
        self.handle.close()
        self.handle = None
        self._record()

    # changes -----------------------------------------------------------
    @precondition(lambda self: self.handle_mode == "r+b" and self.handle is not None)
    @rule(offset=st.integers(0, 12_000), data=st.binary(max_size=5000))
    def write_at(self, offset: int, data: bytes) -> None:
        assert self.handle is not None
        self.handle.seek(offset)
        assert self.handle.write(data) == len(data)
        if data:
            if offset > len(self.model):
                self.model.extend(bytes(offset - len(self.model)))
            self.model[offset : offset + len(data)] = data
        self._record()

    @precondition(lambda self: self.handle_mode == "ab" and self.handle is not None)
    @rule(data=st.binary(min_size=1, max_size=5000))
    def append(self, data: bytes) -> None:
        assert self.handle is not None
        self.handle.write(data)
        self.model.extend(data)
        self._record()

    @precondition(lambda self: self.handle_mode == "r+b" and self.handle is not None)
    @rule(size=st.integers(0, 15_000))
    def truncate(self, size: int) -> None:
        assert self.handle is not None
        self.handle.truncate(size)
        if size < len(self.model):
            del self.model[size:]
        else:
            self.model.extend(bytes(size - len(self.model)))
        self._record()

    @rule(name=st.sampled_from(["alpha", "beta", "gamma"]))
    def mark(self, name: str) -> None:
        if self.handle is not None:
            assert isinstance(self.handle, JournaledFile)
            self.handle.mark(name)
        else:
            self.client.mark(self.path, name)
        self.marks[name] = bytes(self.model)  # the newest mark of a name wins
        self._record()

    # checks ------------------------------------------------------------
    @invariant()
    def live_file_matches(self) -> None:
        if self.handle is None and self.moments:
            assert self.path.read_bytes() == bytes(self.model)

    def teardown(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
            self._record()
        if not self.moments:
            return
        out = self.root / "restored.bin"
        for seq, content in self.moments:
            self.client.restore(self.path, at=f"seq:{seq}", to=out)
            got = out.read_bytes()
            assert got == content, f"seq:{seq}: {len(got)} bytes restored, {len(content)} wanted"
        for name, content in self.marks.items():
            self.client.restore(self.path, at=f"mark:{name}", to=out)
            assert out.read_bytes() == content, f"mark:{name}"
        self.client.restore(self.path, to=out)
        assert out.read_bytes() == bytes(self.model), "latest"


def test_every_recorded_moment_restores(make_daemon: Callable[..., Daemon], tmp_path: Path) -> None:
    # Small checkpoint threshold: runs cross checkpoints and new segments too.
    daemon = make_daemon("model", checkpoint_records=7, capture_quiet_ms=30)
    root = tmp_path / "files"
    root.mkdir()
    machine: Any = type("Machine", (OnWriteModel,), {"daemon": daemon, "root": root})
    run_state_machine_as_test(
        machine,
        settings=settings(max_examples=20, stateful_step_count=15, deadline=None, database=None),
    )
