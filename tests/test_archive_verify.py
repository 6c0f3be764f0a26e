"""`agentcast verify`: every kind of tampering is detected and located; an intact archive passes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from consumers.archive.verify import verify_file, verify_path
from tests.support.archive import write_session
from tests.support.roles import cli

Tamper = Callable[[list[bytes]], list[bytes]]


def _edit(lines: list[bytes]) -> list[bytes]:
    lines[4] = lines[4].replace(b"word2", b"WORD2")
    return lines


def _delete(lines: list[bytes]) -> list[bytes]:
    del lines[4]
    return lines


def _insert(lines: list[bytes]) -> list[bytes]:
    lines.insert(6, lines[2])
    return lines


def _reorder(lines: list[bytes]) -> list[bytes]:
    lines[4], lines[5] = lines[5], lines[4]
    return lines


def _drop_seal(lines: list[bytes]) -> list[bytes]:
    return lines[:-1]


def _delete_before_seal(lines: list[bytes]) -> list[bytes]:
    del lines[-2]
    return lines


@pytest.mark.parametrize(
    ("tamper", "kind", "line"),
    [
        (_edit, "edited", 5),
        (_delete, "deleted", 5),
        (_insert, "inserted", 7),
        (_reorder, "reordered", 5),
        (_drop_seal, "missing seal", 12),
        (_delete_before_seal, "deleted", 12),
    ],
    ids=["edited", "deleted", "inserted", "reordered", "missing-seal", "deleted-before-seal"],
)
async def test_tampering_is_detected_and_located(
    tmp_path: Path, tamper: Tamper, kind: str, line: int
) -> None:
    path = await write_session(tmp_path, "s_t")
    assert verify_file(path).ok
    lines = tamper(path.read_bytes().splitlines(keepends=True))
    path.write_bytes(b"".join(lines))
    report = verify_file(path)
    assert not report.ok
    first = report.problems[0]
    assert (first.kind, first.line) == (kind, line), report.problems


async def test_a_truncated_file_is_located_at_its_cut_line(tmp_path: Path) -> None:
    path = await write_session(tmp_path, "s_cut")
    data = path.read_bytes()
    path.write_bytes(data[: data.rfind(b"\n", 0, -1) + 40])  # into the seal line
    report = verify_file(path)
    assert [(p.kind, p.line) for p in report.problems] == [("truncated", 13)]


async def test_an_edit_that_recomputes_its_hash_breaks_the_next_line(tmp_path: Path) -> None:
    import hashlib

    path = await write_session(tmp_path, "s_re")
    lines = path.read_bytes().splitlines(keepends=True)
    prev = lines[2].rstrip(b"\n")[-66:-2].decode()
    body = lines[3].rstrip(b"\n")[:-75].replace(b"word1", b"WORD1") + b"}"
    digest = hashlib.sha256(prev.encode() + body).hexdigest()
    lines[3] = body[:-1] + b',"hash":"' + digest.encode() + b'"}\n'
    path.write_bytes(b"".join(lines))
    problems = verify_file(path).problems
    assert problems and problems[0].line == 5 and problems[0].kind == "edited"


async def test_tampering_inside_a_compressed_file_is_detected(tmp_path: Path) -> None:
    path = await write_session(tmp_path, "s_z", compress=True)
    assert verify_file(path).ok
    data = zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read()
    path.write_bytes(zstandard.ZstdCompressor().compress(data.replace(b"word3", b"w0rd3")))
    assert [p.kind for p in verify_file(path).problems] == ["edited"]


async def test_open_files_pass_only_when_allowed(tmp_path: Path) -> None:
    path = await write_session(tmp_path, "s_open", seal=False)
    assert [p.kind for p in verify_file(path).problems] == ["missing seal"]
    assert verify_file(path, allow_open=True).ok


async def test_verify_command_checks_a_tree_and_exits_nonzero_on_a_break(tmp_path: Path) -> None:
    for i in range(3):
        await write_session(tmp_path, f"s_{i}", compress=i == 0)
    assert all(r.ok for r in verify_path(tmp_path)) and len(verify_path(tmp_path)) == 3
    ok = await cli("verify", str(tmp_path))
    assert ok.returncode == 0 and "OK: 3 files (0 open), 36 events" in ok.stdout
    target = next(tmp_path.glob("*/s_1.jsonl"))
    lines = target.read_bytes().splitlines(keepends=True)
    del lines[3]
    target.write_bytes(b"".join(lines))
    broken = await cli("verify", str(tmp_path))
    assert broken.returncode == 1
    assert f"{target}:4: deleted: seq 4 missing before this line" in broken.stdout
