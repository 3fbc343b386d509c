"""The on-write journal: roundtrip, seq continuity, replay, torn tails, bit flips, sync modes."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filetwin.errors import RepositoryError, UsageError
from filetwin.repo.journal import (
    HEADER_SIZE,
    RECORD_OVERHEAD,
    JournalWriter,
    Record,
    drop_segments_before,
    iter_records,
    list_segments,
    read_journal,
    replay_into_file,
    replay_onto,
    segments_needed,
)


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def payloads(n: int, seed: int = 0) -> list[bytes]:
    return [bytes((seed + i + j) % 251 for j in range((i * 37) % 90)) for i in range(n)]


def write_journal(d: Path, datas: list[bytes], rotate_every: int = 0) -> list[Record]:
    """Append one write per payload; return what read_journal should give back."""
    with JournalWriter(d) as w:
        for i, data in enumerate(datas):
            if rotate_every and i and i % rotate_every == 0:
                w.rotate()
            w.append_write(i * 10, data)
    return read_journal(d).records


def record_ends(datas: list[bytes]) -> list[int]:
    """Byte offset just past each record in a single-segment journal of writes."""
    ends, pos = [], HEADER_SIZE
    for data in datas:
        pos += RECORD_OVERHEAD + len(data)
        ends.append(pos)
    return ends


def test_roundtrip_every_kind(tmp_path: Path) -> None:
    clock = FakeClock(1234.5)
    with JournalWriter(tmp_path / "j", clock=clock) as w:
        assert w.append_write(7, b"hello") == 1
        clock.t += 1
        assert w.append_truncate(3) == 2
        assert w.append_close(True) == 3
        assert w.append_close(False) == 4
        assert w.append_mark("checkpoint é") == 5
        assert w.append_write(0, b"") == 6
    replay = read_journal(tmp_path / "j")
    assert replay.torn is None and replay.abandoned == [] and replay.next_seq == 7
    got = [(r.seq, r.kind, r.offset, r.length, r.data) for r in replay.records]
    assert got == [
        (1, "write", 7, 5, b"hello"),
        (2, "truncate", 3, 0, b""),
        (3, "close-ok", 0, 0, b""),
        (4, "close-failed", 0, 0, b""),
        (5, "mark", 0, len("checkpoint é".encode()), "checkpoint é".encode()),
        (6, "write", 0, 0, b""),
    ]
    assert replay.records[0].time == pytest.approx(1234.5)
    assert replay.records[1].time == pytest.approx(1235.5)
    assert [p.name for p in list_segments(tmp_path / "j")] == [f"{1:020d}.seg"]
    assert replay_onto(b"", replay.records) == b"\0\0\0"


def test_empty_and_missing_journal(tmp_path: Path) -> None:
    assert read_journal(tmp_path / "none").records == []
    assert read_journal(tmp_path / "none").torn is None
    JournalWriter(tmp_path / "j").close()
    r = read_journal(tmp_path / "j")
    assert r.records == [] and r.torn is None and r.next_seq == 1


def test_seq_continuity_across_rotate_and_reopen(tmp_path: Path) -> None:
    d = tmp_path / "j"
    with JournalWriter(d) as w:
        w.append_write(0, b"a")
        w.append_write(1, b"b")
        assert w.rotate() == 3
        assert w.rotate() == 3  # an empty segment is not rotated again
        w.append_write(2, b"c")
    with JournalWriter(d) as w:
        assert w.next_seq == 4 and w.durable_seq == 3
        assert w.append_write(3, b"d") == 4
    with JournalWriter(d) as w:  # reopen with nothing appended in between
        pass
    with JournalWriter(d) as w:
        assert w.append_mark("m") == 5
    replay = read_journal(d)
    assert [r.seq for r in replay.records] == [1, 2, 3, 4, 5]
    assert replay.torn is None and replay.abandoned == []
    assert replay_onto(b"", replay.records) == b"abcd"
    assert [int(p.name[:20]) for p in list_segments(d)] == [1, 3, 4, 5]
    assert [r.seq for r in read_journal(d, start_seq=4).records] == [4, 5]
    assert [r.seq for r in iter_records(d, start_seq=2)] == [2, 3, 4, 5]


def test_rotation_by_size(tmp_path: Path) -> None:
    d = tmp_path / "j"
    size = HEADER_SIZE + 3 * (RECORD_OVERHEAD + 100)
    with JournalWriter(d, max_segment_bytes=size) as w:
        for i in range(10):
            w.append_write(i * 100, bytes([i]) * 100)
    segs = list_segments(d)
    assert [int(p.name[:20]) for p in segs] == [1, 4, 7, 10]
    assert all(p.stat().st_size <= size for p in segs)
    records = read_journal(d).records
    assert [r.seq for r in records] == list(range(1, 11))
    assert replay_onto(b"", records) == b"".join(bytes([i]) * 100 for i in range(10))


def test_big_write_is_split(tmp_path: Path) -> None:
    from filetwin.repo.journal import MAX_PAYLOAD

    data = os.urandom(MAX_PAYLOAD + 5)
    with JournalWriter(tmp_path / "j", sync="batch") as w:
        assert w.append_write(3, data) == 2
    records = read_journal(tmp_path / "j").records
    assert [r.length for r in records] == [MAX_PAYLOAD, 5]
    assert replay_onto(b"", records) == b"\0\0\0" + data


ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 300), st.binary(max_size=80)),
        st.tuples(st.just("truncate"), st.integers(0, 300), st.just(b"")),
        st.tuples(st.sampled_from(["close", "mark"]), st.just(0), st.just(b"")),
    ),
    max_size=30,
)


@settings(max_examples=50, deadline=None)
@given(base=st.binary(max_size=200), ops=ops, data=st.data())
def test_replay_matches_model(
    base: bytes, ops: list[tuple[str, int, bytes]], data: st.DataObject
) -> None:
    model = [bytearray(base)]  # model[k] = content after k records
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "j"
        with JournalWriter(d, sync="batch", max_segment_bytes=600) as w:
            for kind, n, payload in ops:
                cur = bytearray(model[-1])
                if kind == "write":
                    w.append_write(n, payload)
                    if payload:
                        cur.extend(bytes(max(0, n - len(cur))))
                        cur[n : n + len(payload)] = payload
                elif kind == "truncate":
                    w.append_truncate(n)
                    cur = cur[:n] + bytes(max(0, n - len(cur)))
                elif kind == "close":
                    w.append_close(True)
                else:
                    w.append_mark("x")
                model.append(cur)
        replay = read_journal(d)
        assert replay.torn is None
        assert [r.seq for r in replay.records] == list(range(1, len(ops) + 1))
        assert replay_onto(base, replay.records) == model[-1]
        upto = data.draw(st.integers(0, len(ops)))
        assert replay_onto(base, replay.records, upto_seq=upto) == model[upto]
        target = Path(tmp) / "file"
        target.write_bytes(base)
        fd = os.open(target, os.O_RDWR)
        try:
            replay_into_file(fd, iter_records(d), upto_seq=upto)
        finally:
            os.close(fd)
        assert target.read_bytes() == model[upto]


def test_torn_tail_at_every_offset(tmp_path: Path) -> None:
    datas = payloads(8)
    original = write_journal(tmp_path / "j", datas)
    seg = list_segments(tmp_path / "j")[0]
    raw = seg.read_bytes()
    ends = record_ends(datas)
    assert ends[-1] == len(raw)
    cut_dir = tmp_path / "cut"
    cut_dir.mkdir()
    cut = cut_dir / seg.name
    for n in range(ends[-4], len(raw) + 1):
        cut.write_bytes(raw[:n])
        replay = read_journal(cut_dir)
        whole = sum(1 for e in ends if e <= n)
        assert replay.records == original[:whole], n
        if n in ends:
            assert replay.torn is None
        else:
            assert replay.torn is not None and replay.torn.offset == ends[whole - 1]
            assert replay.torn.reason == "short read" and replay.torn.segment == cut


def test_torn_header(tmp_path: Path) -> None:
    write_journal(tmp_path / "j", payloads(2))
    seg = list_segments(tmp_path / "j")[0]
    raw = seg.read_bytes()
    for n in range(HEADER_SIZE):
        seg.write_bytes(raw[:n])
        replay = read_journal(tmp_path / "j")
        assert replay.records == [] and replay.torn is not None and replay.torn.offset == 0


_FLIP_CACHE: dict[str, tuple[dict[str, bytes], list[Record]]] = {}


def flip_base() -> tuple[dict[str, bytes], list[Record]]:
    if not _FLIP_CACHE:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp) / "j"
            records = write_journal(d, payloads(12), rotate_every=5)
            _FLIP_CACHE["x"] = ({p.name: p.read_bytes() for p in list_segments(d)}, records)
    return _FLIP_CACHE["x"]


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_bit_flips_give_a_prefix(data: st.DataObject) -> None:
    files, original = flip_base()
    names = sorted(files)
    flips = data.draw(
        st.lists(
            st.tuples(st.sampled_from(names), st.integers(0, 10**9), st.integers(0, 7)),
            min_size=1,
            max_size=4,
        )
    )
    damaged = {n: bytearray(b) for n, b in files.items()}
    for name, pos, bit in {(n, p % len(files[n]), b) for n, p, b in flips}:  # distinct bits
        damaged[name][pos] ^= 1 << bit
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in damaged.items():
            (Path(tmp) / name).write_bytes(content)
        replay = read_journal(Path(tmp))
    got = replay.records
    assert got == original[: len(got)]
    assert len(got) < len(original)
    assert replay.torn is not None


def test_corrupt_tail_before_later_segment_stops_replay(tmp_path: Path) -> None:
    d = tmp_path / "j"
    original = write_journal(d, payloads(10), rotate_every=5)
    first = list_segments(d)[0]
    raw = bytearray(first.read_bytes())
    raw[-3] ^= 0xFF  # damage record 5, the last of the first segment
    first.write_bytes(raw)
    replay = read_journal(d)
    assert replay.records == original[:4]
    assert replay.torn is not None and replay.torn.segment == first
    assert replay.torn.reason == "bad checksum"


def test_missing_middle_segment_stops_replay(tmp_path: Path) -> None:
    d = tmp_path / "j"
    original = write_journal(d, payloads(9), rotate_every=3)
    list_segments(d)[1].unlink()
    replay = read_journal(d)
    assert replay.records == original[:3]
    assert replay.torn is not None and replay.torn.reason == "bad sequence"
    assert replay.torn.segment.name == f"{7:020d}.seg"


def test_stale_bytes_of_another_journal_are_not_records(tmp_path: Path) -> None:
    datas = payloads(10)
    write_journal(tmp_path / "a", datas[:5])
    # Same seqs and structure, other data and other salt.
    other = write_journal(tmp_path / "b", payloads(10, seed=99))
    a = list_segments(tmp_path / "a")[0]
    stale = list_segments(tmp_path / "b")[0].read_bytes()[record_ends(payloads(10, seed=99))[4] :]
    a.write_bytes(a.read_bytes() + stale)
    replay = read_journal(tmp_path / "a")
    assert [r.seq for r in replay.records] == [1, 2, 3, 4, 5]
    assert replay.torn is not None and replay.torn.reason == "bad checksum"
    assert replay.torn.offset == record_ends(datas)[4]
    assert other[5].seq == 6  # the stale record did carry the expected seq


def test_stale_bytes_of_a_known_segment_are_named_bad_salt(tmp_path: Path) -> None:
    d = tmp_path / "j"
    datas = payloads(10)
    original = write_journal(d, datas, rotate_every=5)
    first, second = list_segments(d)
    # Records 6.. of the second segment spliced after record 5: right seqs, wrong salt.
    first.write_bytes(first.read_bytes() + second.read_bytes()[HEADER_SIZE:])
    replay = read_journal(d)
    assert replay.records == original
    assert replay.torn is None
    assert len(replay.abandoned) == 1
    assert replay.abandoned[0].reason == "bad salt"
    assert replay.abandoned[0].offset == record_ends(datas[:5])[-1]


def test_always_mode_is_durable_per_append(tmp_path: Path) -> None:
    with JournalWriter(tmp_path / "j", sync="always") as w:
        assert w.durable_seq == 0
        for i in range(5):
            seq = w.append_write(i, b"x")
            assert w.durable_seq == seq
        assert w.flush_deadline is None


def test_batch_mode_durable_after_sync_or_window(tmp_path: Path) -> None:
    clock = FakeClock()
    with JournalWriter(tmp_path / "j", sync="batch", batch_window_s=0.1, clock=clock) as w:
        assert w.flush_if_due() is False
        s1 = w.append_write(0, b"a")
        w.append_write(1, b"b")
        assert w.durable_seq == 0
        assert w.flush_deadline == pytest.approx(clock.t + 0.1)
        clock.t += 0.05
        assert w.flush_if_due() is False and w.durable_seq == 0
        clock.t += 0.06
        assert w.flush_if_due() is True and w.durable_seq == s1 + 1
        assert w.flush_deadline is None
        s3 = w.append_write(2, b"c")
        assert w.durable_seq == s3 - 1
        assert w.sync() == s3 and w.durable_seq == s3
        s4 = w.append_mark("m")
        assert w.rotate() == s4 + 1 and w.durable_seq == s4
        s5 = w.append_write(3, b"d")
    # Unsynced appends are in the OS already; close made them durable.
    assert [r.seq for r in read_journal(tmp_path / "j").records] == [1, 2, 3, 4, s5]


def test_failed_sync_is_final(tmp_path: Path) -> None:
    w = JournalWriter(tmp_path / "j", sync="batch")
    w.append_write(0, b"a")
    r, wr = os.pipe()
    os.dup2(r, w._fd)  # fdatasync on a pipe fails (EINVAL): a real failed sync
    os.close(r)
    os.close(wr)
    with pytest.raises(RepositoryError, match="fdatasync failed"):
        w.sync()
    assert w.durable_seq == 0
    with pytest.raises(RepositoryError, match="unusable"):
        w.append_write(1, b"b")
    with pytest.raises(RepositoryError, match="unusable"):
        w.sync()
    w.close()  # does not sync again
    w.close()


def test_reopen_after_torn_tail(tmp_path: Path) -> None:
    d = tmp_path / "j"
    datas = payloads(6)
    original = write_journal(d, datas)
    seg = list_segments(d)[0]
    ends = record_ends(datas)
    torn = seg.read_bytes()[: ends[3] + 20]  # record 5 half written
    seg.write_bytes(torn)
    with JournalWriter(d) as w:
        assert w.next_seq == 5 and w.durable_seq == 4
        assert w.append_write(100, b"after") == 5
        w.append_write(200, b"more")
    assert seg.read_bytes() == torn  # left as it was, for forensics
    replay = read_journal(d)
    assert replay.records[:4] == original[:4]
    assert [r.seq for r in replay.records] == [1, 2, 3, 4, 5, 6]
    assert replay.records[4].data == b"after"
    assert replay.torn is None
    assert [(a.segment, a.offset, a.reason) for a in replay.abandoned] == [
        (seg, ends[3], "short read")
    ]


def test_reopen_after_torn_first_record_and_header(tmp_path: Path) -> None:
    d = tmp_path / "j"
    write_journal(d, [b"abc"])
    seg = list_segments(d)[0]
    seg.write_bytes(seg.read_bytes()[: HEADER_SIZE + 5])  # no whole record at all
    with JournalWriter(d) as w:
        assert w.append_write(0, b"new") == 1
    assert [r.data for r in read_journal(d).records] == [b"new"]
    assert any(n.startswith(seg.name + ".aside-") for n in os.listdir(d))
    seg.write_bytes(b"FTJ")  # now a torn header
    with JournalWriter(d) as w:
        assert w.append_write(0, b"newer") == 1
    replay = read_journal(d)
    assert [r.data for r in replay.records] == [b"newer"] and replay.torn is None


def test_reopen_after_mid_journal_corruption_keeps_later_segments_behind_a_gap(
    tmp_path: Path,
) -> None:
    d = tmp_path / "j"
    original = write_journal(d, payloads(9), rotate_every=3)
    segs = list_segments(d)
    raw = bytearray(segs[1].read_bytes())
    raw[HEADER_SIZE + RECORD_OVERHEAD + len(payloads(9)[3]) + 10] ^= 1  # damage record 5
    segs[1].write_bytes(raw)
    # Records 7..9 are whole: the writer never gives their seqs (nor 5, 6) to new records.
    with JournalWriter(d) as w:
        assert w.append_write(0, b"z") == 10
    strict = read_journal(d)
    assert strict.records == original[:4] and strict.torn is not None
    replay = read_journal(d, allow_gaps=True)
    assert replay.records[:4] == original[:4] and replay.records[4:7] == original[6:]
    assert replay.records[7].seq == 10 and replay.records[7].data == b"z"
    assert replay.gaps == [(5, 6)] and replay.torn is None
    assert segs[2].exists()


def test_reopen_never_reuses_seqs_a_version_covers(tmp_path: Path) -> None:
    d = tmp_path / "j"
    write_journal(d, payloads(4))
    with JournalWriter(d, floor_seq=30) as w:
        assert w.skipped_at_open == (5, 30)
        assert w.append_write(0, b"n") == 31
    replay = read_journal(d, allow_gaps=True)
    assert [r.seq for r in replay.records] == [1, 2, 3, 4, 31] and replay.gaps == [(5, 30)]
    assert [r.seq for r in read_journal(d, start_seq=31).records] == [31]
    with JournalWriter(d, floor_seq=30) as w:  # the gap is kept, not set aside
        assert w.skipped_at_open is None and w.append_write(0, b"m") == 32


def test_append_many_is_one_batch(tmp_path: Path) -> None:
    d = tmp_path / "j"
    with JournalWriter(d, sync="always") as w:
        assert w.append_many([("truncate", 5, b""), ("write", 0, b"ab"), ("close-ok", 0, b"")]) == [
            1,
            2,
            3,
        ]
        assert w.durable_seq == 3
    assert [r.kind for r in read_journal(d).records] == ["truncate", "write", "close-ok"]


def test_segments_needed_and_drop(tmp_path: Path) -> None:
    d = tmp_path / "j"
    write_journal(d, payloads(10), rotate_every=3)
    firsts = [int(p.name[:20]) for p in list_segments(d)]
    assert firsts == [1, 4, 7, 10]
    assert [int(p.name[:20]) for p in segments_needed(d, 0)] == firsts
    assert [int(p.name[:20]) for p in segments_needed(d, 5)] == [4, 7, 10]
    assert [int(p.name[:20]) for p in segments_needed(d, 7)] == [7, 10]
    assert [int(p.name[:20]) for p in segments_needed(d, 99)] == [10]
    removed = drop_segments_before(d, 6)
    assert [int(p.name[:20]) for p in removed] == [1]
    assert [r.seq for r in read_journal(d, start_seq=6).records] == [6, 7, 8, 9, 10]
    assert [r.seq for r in read_journal(d).records] == list(range(4, 11))
    gap = read_journal(d, start_seq=2)  # asked for records that were dropped
    assert gap.records == [] and gap.torn is not None and gap.torn.reason == "bad sequence"
    assert drop_segments_before(d, 10**6) and len(list_segments(d)) == 1  # never the newest
    with JournalWriter(d) as w:
        assert w.next_seq == 11


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        JournalWriter(tmp_path / "j", sync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        JournalWriter(tmp_path / "j", max_segment_bytes=10)
    with JournalWriter(tmp_path / "j") as w, pytest.raises(UsageError):
        w.append_write(-1, b"x")


def test_temp_files_are_ignored_and_cleaned(tmp_path: Path) -> None:
    d = tmp_path / "j"
    write_journal(d, [b"a"])
    (d / ".tmp-deadbeef").write_bytes(b"FTJ1 half a header")
    assert len(read_journal(d).records) == 1
    JournalWriter(d).close()
    assert not (d / ".tmp-deadbeef").exists()
    shutil.rmtree(d)
