"""Signed checkpoints: `verify --key` catches each kind of rewrite and names it; proofs; rotation; exit codes.

Archives here are written by the real ArchiveWriter and Checkpointer (no NATS:
the witness is tested with real archiver processes in test_archive_witness.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from consumers.archive import chain, merkle, signing
from consumers.archive.checkpointer import Checkpointer
from tests.support.archive import append, writer
from tests.support.events import build_events, simple_run
from tests.support.roles import cli

ARCHIVE_ID = "test-archive"


async def _archive(root: Path, key: Path) -> Checkpointer:
    """Four sessions over three checkpoints: s_a and s_b sealed, s_c and s_d open."""
    w = writer(root)
    cp = Checkpointer(root, ARCHIVE_ID, key, interval_s=3600)
    try:
        await cp.start(w.chains())
        for s in ("s_a", "s_b", "s_c"):
            append(w, build_events(s, simple_run(4)))
        w.seal(w.get("s_a", 0))
        await w.flush()
        await cp.tick(w.chains())
        await cp.write()
        append(w, build_events("s_d", simple_run(3)))
        w.seal(w.get("s_b", 0))
        await w.flush()
        await cp.final(w.chains())
        # s_c goes on after the last checkpoint: an open file with more than it recorded.
        append(w, build_events("s_c", simple_run(2), run=2, first_seq=12))
        await w.flush()
        return cp
    finally:
        w.close()


@pytest.fixture
async def archive(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "archive"
    cp = await _archive(root, tmp_path / "archive.key")
    return root, cp.public_key


def _file(root: Path, session: str) -> Path:
    return next(root.glob(f"*/{session}.jsonl*"))


def _log(root: Path) -> Path:
    return root / f"_checkpoints.{ARCHIVE_ID}.jsonl"


def _rechain(path: Path, edit: Callable[[list[bytes]], list[bytes]]) -> None:
    """Edit the records of a file and recompute its whole chain, seal included: no chain check sees it."""
    records = [chain.parse(chain.split(line)[0]) for line in path.read_bytes().splitlines()]
    bodies = edit([chain.canonical(r) for r in records])
    out, prev, count, last_seq = [], chain.GENESIS, 0, 0
    for body in bodies:
        record = chain.parse(body)
        if chain.record_kind(record) == "seal":
            body = chain.canonical(
                chain.seal_record(record["seal"]["session"], count, last_seq, prev)
            )
        else:
            count, last_seq = count + 1, record["seq"]
        prev = chain.link(prev, body)
        out.append(chain.frame(body, prev))
    path.write_bytes(b"".join(out))


def _rewrite(root: Path) -> None:
    _rechain(_file(root, "s_a"), lambda b: [x.replace(b"word1", b"WORD1") for x in b])


def _delete(root: Path) -> None:
    _file(root, "s_b").unlink()


def _cut(root: Path) -> None:
    path = _file(root, "s_d")  # open; its last checkpoint recorded all 10 events
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:-2]))


def _edit_checkpoint(root: Path) -> None:
    log = _log(root)
    log.write_bytes(log.read_bytes().replace(b'"count":11', b'"count":10', 1))


def _drop_checkpoint(root: Path) -> None:
    lines = _log(root).read_bytes().splitlines(keepends=True)
    _log(root).write_bytes(b"".join(lines[:1] + lines[2:]))


def _reorder_checkpoints(root: Path) -> None:
    lines = _log(root).read_bytes().splitlines(keepends=True)
    _log(root).write_bytes(b"".join([lines[0], lines[2], lines[1], *lines[3:]]))


def _forge(root: Path) -> None:
    """Re-sign an edited last checkpoint with a key of one's own, header and root consistent."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from consumers.archive import checkpoint

    lines = _log(root).read_bytes().splitlines(keepends=True)
    record = json.loads(lines[-1])
    record["checkpoint"]["time"] += 1
    mine = Ed25519PrivateKey.generate()
    record["sig"] = signing.sign(mine, chain.canonical(record["checkpoint"]))
    lines[-1] = checkpoint.msgspec.json.encode(record) + b"\n"
    _log(root).write_bytes(b"".join(lines))


@pytest.mark.parametrize(
    ("tamper", "kind", "where"),
    [
        (_rewrite, "rewritten", "s_a.jsonl:11"),
        (_delete, "deleted", "s_b.jsonl"),
        (_cut, "cut", "s_d.jsonl:8"),
        (_edit_checkpoint, "edited", f"_checkpoints.{ARCHIVE_ID}.jsonl:"),
        (_drop_checkpoint, "dropped", f"_checkpoints.{ARCHIVE_ID}.jsonl:2"),
        (_reorder_checkpoints, "reordered", f"_checkpoints.{ARCHIVE_ID}.jsonl:3"),
        (_forge, "forged", f"_checkpoints.{ARCHIVE_ID}.jsonl:3"),
    ],
    ids=["rewrite", "delete", "cut", "edit-checkpoint", "drop", "reorder", "forge"],
)
async def test_verify_key_catches_and_names_each_rewrite(
    archive: tuple[Path, str], tamper: Callable[[Path], None], kind: str, where: str
) -> None:
    root, key = archive
    plain = await cli("verify", str(root))
    assert plain.returncode == 0, plain.stdout
    tamper(root)
    got = await cli("verify", str(root), "--key", key)
    assert got.returncode == 1, got.stdout + got.stderr
    assert "Traceback" not in got.stderr
    findings = [ln for ln in got.stdout.splitlines() if f": {kind}: " in ln]
    assert findings and any(where in ln for ln in findings), got.stdout
    assert re.search(r"checkpoint #\d", "\n".join(findings)) or kind == "deleted", findings


async def test_a_rewrite_with_a_recomputed_chain_passes_the_chain_checks_alone(
    archive: tuple[Path, str],
) -> None:
    root, key = archive
    _rewrite(root)
    assert (await cli("verify", str(root))).returncode == 0  # what the chain alone cannot see
    assert (await cli("verify", str(root), "--key", key)).returncode == 1


async def test_the_untouched_archive_passes_with_open_files_reported(
    archive: tuple[Path, str],
) -> None:
    root, key = archive
    got = await cli("verify", str(root), "--key", key)
    assert got.returncode == 0, got.stdout
    opened = {
        ln.split("/")[-1].split(":")[0]: ln for ln in got.stdout.splitlines() if ": open: " in ln
    }
    assert set(opened) == {"s_c.jsonl", "s_d.jsonl"}
    assert "20 events (checkpoint #3 covers 11)" in opened["s_c.jsonl"]
    assert "10 events (checkpoint #3 covers 10)" in opened["s_d.jsonl"]
    assert got.stdout.splitlines()[-1].startswith("OK: 4 files (2 open)")
    sealed = await cli("verify", str(root), "--key", key, "--sealed")
    assert sealed.returncode == 1 and sealed.stdout.count("missing seal") == 2


async def test_exit_codes_for_what_cannot_be_verified(
    archive: tuple[Path, str], tmp_path: Path
) -> None:
    root, _ = archive
    bad_key = await cli("verify", str(root), "--key", "ed25519:nonsense")
    assert bad_key.returncode == 2 and "--key" in bad_key.stderr
    missing = await cli("verify", str(root), "--key", str(tmp_path / "nokey.pub"))
    assert missing.returncode == 2
    other = signing.public_of(signing.load_or_create(tmp_path / "other.key"))
    wrong = await cli("verify", str(root), "--key", other)
    assert wrong.returncode == 1 and "no checkpoint is signed by" in wrong.stdout
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    for target in (tmp_path / "etc", tmp_path / "etc" / "passwd", tmp_path / "nowhere"):
        got = await cli("verify", str(target))
        assert got.returncode == 2 and "Traceback" not in got.stderr, got.stderr
        assert "OK" not in got.stdout and "error" in got.stderr
    fake = tmp_path / "etc" / "s_x.jsonl"
    fake.write_text("hello\nworld\n")
    for args in (
        ("verify", str(fake)),
        ("replay", str(fake)),
        ("replay", str(tmp_path / "etc" / "passwd")),
    ):
        got = await cli(*args)
        assert got.returncode == 2 and "Traceback" not in got.stderr, got.stderr


async def test_a_rotated_key_is_followed(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    key = tmp_path / "archive.key"
    w = writer(root)
    cp = Checkpointer(root, ARCHIVE_ID, key, interval_s=3600)
    try:
        await cp.start(w.chains())
        old = cp.public_key
        append(w, build_events("s_r", simple_run(2)))
        await w.flush()
        rotated = await cli("archiver", "--rotate-key", "--key", str(key))
        assert rotated.returncode == 0, rotated.stderr
        new = rotated.stdout.strip()
        assert new == signing.public_of(signing.load_private(signing.next_path(key)))
        await cp.tick(w.chains())
        await cp.write()  # names the new key, signed by the old one
        assert cp.public_key == new and not signing.next_path(key).exists()
        append(w, build_events("s_r", simple_run(1), run=2, first_seq=10))
        await w.flush()
        await cp.final(w.chains())
    finally:
        w.close()
    headers = [
        json.loads(line)["checkpoint"]
        for line in (root / f"_checkpoints.{ARCHIVE_ID}.jsonl").read_bytes().splitlines()
    ]
    assert [h["key"] for h in headers] == [old, old, new]
    assert headers[1]["next_key"] == new
    for trusted in (old, new):
        got = await cli("verify", str(root), "--key", trusted)
        assert got.returncode == 0, got.stdout
    # A key switch that no rotation names is a finding.
    log = root / f"_checkpoints.{ARCHIVE_ID}.jsonl"
    log.write_bytes(log.read_bytes().replace(b',"next_key":"' + new.encode() + b'"', b""))
    got = await cli("verify", str(root), "--key", old)
    assert got.returncode == 1 and ": key: " in got.stdout


async def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, list(argv), capture_output=True, text=True, timeout=30, check=False
    )


def _documented_verifier() -> str:
    readme = (Path(__file__).parent.parent / "consumers" / "README.md").read_text()
    section = readme.split("### Inclusion proofs", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


async def test_the_documented_verifier_checks_a_real_proof(
    archive: tuple[Path, str], tmp_path: Path
) -> None:
    root, key = archive
    got = await cli("verify", str(root), "--prove", "s_b")
    assert got.returncode == 0, got.stderr
    proof = json.loads(got.stdout)
    assert proof["entry"]["session"] == "s_b" and proof["tree_size"] == 4
    (tmp_path / "proof.json").write_text(got.stdout)
    script = tmp_path / "verify_proof.py"
    script.write_text(_documented_verifier())
    file = _file(root, "s_b")
    run = [sys.executable, str(script), str(tmp_path / "proof.json"), key, str(file)]
    ok = await _run(*run)
    assert ok.returncode == 0 and "s_b" in ok.stdout, ok.stdout + ok.stderr
    other = signing.public_of(signing.load_or_create(tmp_path / "other.key"))
    bad = await _run(*run[:3], other, run[4])
    assert bad.returncode != 0
    _rechain(file, lambda b: [x.replace(b"word1", b"WORD1") for x in b])
    tampered = await _run(*run)
    assert tampered.returncode != 0
    missing = await cli("verify", str(root), "--prove", "s_nope")
    assert missing.returncode == 2


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962's recursive definition, to check the iterative one against."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return merkle.node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def test_merkle_root_and_paths_follow_rfc_6962() -> None:
    for n in range(34):
        leaves = [merkle.leaf_hash(str(i).encode()) for i in range(n)]
        root = merkle.root(leaves)
        assert root == _mth(leaves)
        for i in range(n):
            assert merkle.root_from_path(leaves[i], i, n, merkle.path(leaves, i)) == root
            if n > 1:
                with pytest.raises(ValueError):
                    merkle.root_from_path(leaves[i], i, n, merkle.path(leaves, i)[:-1])
