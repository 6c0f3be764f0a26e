"""`agentcast replay` and `agentcast verify` on hostile input: non-archives and special files
get a clean error and a non-zero exit (no traceback), and links out of the archive directory
are not followed unless asked (`--follow-links`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentcast.cli import main
from tests.support.archive import write_session


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def junk(tmp_path: Path) -> dict[str, Path]:
    files = {
        "binary": tmp_path / "bin.jsonl",
        "zst": tmp_path / "bad.jsonl.zst",
        "text": tmp_path / "notes.jsonl",
        "fifo": tmp_path / "fifo.jsonl",
    }
    files["binary"].write_bytes(os.urandom(3000))
    files["zst"].write_bytes(os.urandom(100))
    files["text"].write_bytes(b"\xff\xfe hello\n{}\n")
    os.mkfifo(files["fifo"])
    return files


def test_non_archives_are_a_clean_error_for_replay_and_verify(
    junk: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("binary", "zst", "text", "fifo"):
        for command in ("replay", "verify"):
            code, out = _cli(capsys, command, str(junk[name]))
            assert code != 0, (command, name, out)
            assert "Traceback" not in out and "agentcast: error:" in out or "BROKEN" in out
    for special in (str(tmp_path), "/dev/null"):
        code, out = _cli(capsys, "verify", special)
        assert code == 2 and "agentcast: error:" in out, out
    code, out = _cli(capsys, "replay", "../../etc/passwd-is-no-session", "--archive", str(tmp_path))
    assert code == 2 and "invalid session id" in out


async def test_links_out_of_the_archive_are_not_followed_unless_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive, outside = tmp_path / "archive", tmp_path / "outside"
    inside = await write_session(archive, "s_in")
    foreign = await write_session(outside, "s_out")
    (inside.parent / "s_link.jsonl").symlink_to(foreign)  # a file linked out
    (archive / "2000-01-01").symlink_to(foreign.parent, target_is_directory=True)  # a day dir

    code, out = _cli(capsys, "replay", "s_link", "--archive", str(archive), "--json")
    assert code == 2 and "links out of the archive" in out and '"session"' not in out
    code, out = _cli(capsys, "replay", "s_out", "--archive", str(archive), "--json")
    assert code == 2 and "links out of the archive" in out
    code, out = _cli(capsys, "replay", "s_in", "--archive", str(archive), "--json")
    assert code == 0 and '"s_in"' in out

    code, out = _cli(capsys, "verify", str(archive))
    assert code == 1 and out.count("links out of the archive") == 2, out
    code, out = _cli(capsys, "verify", str(archive), "--follow-links")
    assert "links out of the archive" not in out and "s_out' in s_link's file" in out  # read
    code, out = _cli(
        capsys, "replay", "s_link", "--archive", str(archive), "--follow-links", "--json"
    )
    assert code == 0 and '"s_out"' in out
