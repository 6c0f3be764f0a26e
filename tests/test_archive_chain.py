"""The archive file format: canonical bytes, hash chain, seal and reopen, recovery; no NATS."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgspec
import pytest

from agentcast.events import TextDeltaData
from consumers.archive import chain
from consumers.archive.files import read_bytes, recover
from consumers.archive.reader import read_events
from consumers.archive.verify import verify_file
from consumers.holdback import Holdback
from tests.support.archive import append, write_session, writer
from tests.support.events import build_events, simple_run


def _readme_verify(path: Path) -> int:
    """The verification snippet of consumers/README.md, standard library only."""
    prev = ""
    count = 0
    for n, line in enumerate(path.read_bytes().splitlines(), 1):
        body, _, tail = line.rpartition(b',"hash":"')
        digest = hashlib.sha256(prev.encode() + body + b"}").hexdigest()
        assert tail == digest.encode() + b'"}', f"line {n}: chain broken"
        prev = digest
        count += 1
    return count


async def test_a_line_is_the_canonical_record_plus_its_hash(tmp_path: Path) -> None:
    path = await write_session(tmp_path, "s_one", seal=False)
    lines = path.read_bytes().splitlines()
    first = json.loads(lines[0])
    assert list(first)[-1] == "hash" and first["cursor"] == "1" and first["seq"] == 1
    canonical, digest = chain.split(lines[0])
    record = {k: v for k, v in first.items() if k != "hash"}
    # Sorted keys, no whitespace, UTF-8: what json.dumps gives for these values too.
    assert canonical == json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    assert digest == hashlib.sha256(canonical).hexdigest()
    assert _readme_verify(path) == len(lines) == 12


def test_canonical_bytes_do_not_depend_on_key_order_or_non_ascii() -> None:
    a = chain.canonical({"b": 1, "a": {"y": "é", "x": [2, 1]}})
    b = chain.canonical({"a": {"x": [2, 1], "y": "é"}, "b": 1})
    assert a == b == '{"a":{"x":[2,1],"y":"é"},"b":1}'.encode()


def test_split_rejects_lines_without_a_hash() -> None:
    with pytest.raises(chain.MalformedLine):
        chain.split(b'{"a":1}')
    with pytest.raises(chain.MalformedLine):
        chain.split(b'{"a":1,"hash":"' + b"Z" * 64 + b'"}')


async def test_seal_records_count_and_last_hash_and_a_later_run_continues_the_chain(
    tmp_path: Path,
) -> None:
    path = await write_session(tmp_path, "s_two", n_text=2)
    w = writer(tmp_path)
    try:
        sf = w.get("s_two", 0)
        assert sf.sealed and sf.count == 9 and sf.last_seq == 9
        append(w, build_events("s_two", simple_run(1), run=2, first_seq=10), first_cursor=100)
        w.seal(sf)
        await w.flush()
    finally:
        w.close()
    records = [chain.parse(chain.split(line)[0]) for line in path.read_bytes().splitlines()]
    seals = [r["seal"] for r in records if "seal" in r]
    assert [s["count"] for s in seals] == [9, 17]
    assert [e.seq for e in read_events(path)] == list(range(1, 18))
    assert verify_file(path).ok, verify_file(path).problems


async def test_sealed_files_are_compressed_and_reopened_for_a_later_run(tmp_path: Path) -> None:
    path = await write_session(tmp_path, "s_zst", compress=True)
    assert path.name == "s_zst.jsonl.zst" and verify_file(path).ok
    w = writer(tmp_path, compress=True)
    try:
        sf = w.get("s_zst", 0)
        append(
            w,
            build_events("s_zst", [TextDeltaData(index=0, text="again")], run=2, first_seq=13),
            50,
        )
        await w.flush()
        assert sf.path.name == "s_zst.jsonl" and not path.exists()
    finally:
        w.close()
    assert [e.seq for e in read_events(sf.path)][-2:] == [12, 13]
    assert verify_file(sf.path, allow_open=True).ok


async def test_an_unfinished_last_line_is_cut_at_recovery(tmp_path: Path) -> None:
    path = await write_session(tmp_path, "s_cut", seal=False)
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"cursor":"13","data":{"ind')  # a crash mid-write
    sf = recover("s_cut", path)
    assert path.read_bytes() == whole
    assert (sf.last_seq, sf.count, sf.ended) == (12, 12, True)
    assert sf.last_hash == chain.split(whole.splitlines()[-1])[1]


async def test_the_date_directory_is_the_utc_date_of_the_first_event(tmp_path: Path) -> None:
    w = writer(tmp_path)
    try:
        events = build_events("s_day", simple_run(1))
        events = [msgspec.structs.replace(e, ts=86_400 * 10**9 + i) for i, e in enumerate(events)]
        append(w, events)
        await w.flush()
    finally:
        w.close()
    assert (tmp_path / "1970-01-02" / "s_day.jsonl").exists()
    assert len(read_bytes(tmp_path / "1970-01-02" / "s_day.jsonl").splitlines()) == len(events)


def test_holdback_releases_in_seq_order_and_bounds_acks() -> None:
    held: Holdback[str] = Holdback(gap_timeout_s=60)
    held.hold("s", 5, 105, "e5")
    held.hold("s", 4, 104, "e4")
    assert held.hold("s", 4, 104, "e4 again") is None  # a redelivery replaces the copy
    assert held.min_stream_seq() == 104 and held.first_held("s") == 4
    assert list(held.release("s", 3, 0)) == []
    assert [h.item for h in held.release("s", 4, 103)] == ["e4 again", "e5"]
    assert not held and held.min_stream_seq() is None


def test_holdback_never_releases_what_in_order_events_overtook() -> None:
    """A far-ahead seq stored before the session's next in-order events is not its writer's."""
    held: Holdback[str] = Holdback(gap_timeout_s=60)
    held.hold("s", 9, 100, "forged 9")
    assert held.hold("s", 9, 150, "another 9") is not None  # a second message with a held seq
    for seq, at in ((5, 101), (6, 102), (7, 103), (8, 104)):
        assert held.applied("s", seq, at) == []
        assert list(held.release("s", seq + 1, at)) == []  # 9 was stored before 8: not released
    assert [h.item for h in held.overtaken("s")] == ["forged 9"]
    assert not held


def test_holdback_hands_back_a_held_seq_the_real_event_supersedes() -> None:
    held: Holdback[str] = Holdback(gap_timeout_s=60)
    held.hold("s", 6, 100, "forged 6")
    assert held.applied("s", 5, 101) == []
    assert list(held.release("s", 6, 101)) == []
    assert [h.item for h in held.applied("s", 6, 102)] == ["forged 6"]
    assert not held


def test_holdback_reports_gaps_that_outlive_the_timeout() -> None:
    held: Holdback[str] = Holdback(gap_timeout_s=5)
    held.hold("s", 9, 1, "e9")
    assert held.expired() == []
    assert held.expired(now=10**9) == ["s"]
