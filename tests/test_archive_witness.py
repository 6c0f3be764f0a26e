"""Checkpoints from a real archiver process: kill -9 continuity, the JetStream witness, a rolled-back log."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from agentcast.embedded import free_port
from agentcast.settings import Settings
from consumers.archive import witness
from consumers.archive.files import session_of
from tests.support.events import build_events, publish_events, simple_run, unique_session
from tests.support.roles import Role, cli, next_stream_seq, unique_name, wait_until

pytestmark = pytest.mark.timeout(120)


def _archiver(settings: Settings, tmp: Path, durable: str, start: int) -> Role:
    assert settings.nats_url
    env = {
        "AGENTCAST_ARCHIVE_CONSUMER": durable,
        "AGENTCAST_CONSUMER_START_SEQ": str(start),
        "AGENTCAST_SEAL_IDLE_S": "0.5",
        "AGENTCAST_COMPRESS_SEALED": "1",
        "AGENTCAST_CHECKPOINT_INTERVAL_S": "0.2",
    }
    args = ["--nats", settings.nats_url, "--data", str(tmp / "data"), "--dir", str(tmp / "archive")]
    return Role("archiver", args, env, tmp / "archiver.log", "Archiver ready")


def _log_headers(root: Path, durable: str) -> list[dict[str, object]]:
    log = root / f"_checkpoints.{durable}.jsonl"
    return [json.loads(line)["checkpoint"] for line in log.read_bytes().splitlines()]


async def test_checkpoints_survive_kill_9_and_match_the_witness(
    js: JetStreamContext, settings: Settings, tmp_path: Path
) -> None:
    assert settings.nats_url
    rng = random.Random(15)
    durable = unique_name("ckpt")
    root = tmp_path / "archive"
    start = await next_stream_seq(js)
    role = _archiver(settings, tmp_path, durable, start)
    key = (await cli("archiver", "--print-public-key", "--data", str(tmp_path / "data"))).stdout
    assert key.startswith("ed25519:")
    key = key.strip()
    sessions = [unique_session("ck") for _ in range(60)]
    role.start()
    try:
        for i in range(0, len(sessions), 10):
            for s in sessions[i : i + 10]:
                await publish_events(js, build_events(s, simple_run(3 + rng.randint(0, 5))))
            await asyncio.sleep(rng.uniform(0.1, 0.6))
            if i // 10 % 2 == 0:  # three crashes, at whatever point the archiver is
                role.kill()
                role.start()
        await wait_until(
            lambda: {session_of(p) for p in root.glob("*/*.jsonl.zst")} >= set(sessions),
            60,
            "every session sealed",
        )
        live = await cli("verify", str(root), "--key", key, "--witness", settings.nats_url)
        assert live.returncode == 0, live.stdout + live.stderr  # verified while it runs
    finally:
        assert role.stop() == 0, role.output()[-3000:]
    assert role.starts == 4
    headers = _log_headers(root, durable)
    assert [h["seq"] for h in headers] == list(range(1, len(headers) + 1))
    witnessed = await witness.read_all(js, durable)
    assert len(witnessed) == len(headers)
    got = await cli("verify", str(root), "--key", key, "--witness", settings.nats_url)
    assert got.returncode == 0, got.stdout + got.stderr
    last = got.stdout.splitlines()[-1]
    assert last.startswith(f"OK: {len(sessions)} files (0 open)") and "not witnessed" not in last

    # Roll the log back by two checkpoints: without the witness it looks whole; with it, it is not.
    log = root / f"_checkpoints.{durable}.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-2]))
    alone = await cli("verify", str(root), "--key", key)
    assert alone.returncode == 0, alone.stdout
    caught = await cli("verify", str(root), "--key", key, "--witness", settings.nats_url)
    assert caught.returncode == 1
    assert f"rolled back: the log ends at checkpoint #{len(lines) - 2}" in caught.stdout

    # A restarted archiver never forks the witness's chain: it continues after the witness's head.
    role.start()
    assert role.stop() == 0, role.output()[-3000:]
    assert "was rolled back or replaced" in role.output()
    after = await witness.read_all(js, durable)
    seqs = [json.loads(p)["checkpoint"]["seq"] for p in after]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= len(lines) + 2
    dropped = await cli("verify", str(root), "--key", key, "--witness", settings.nats_url)
    assert dropped.returncode == 1 and ": dropped: " in dropped.stdout


async def test_an_unreachable_witness_cannot_verify(tmp_path: Path) -> None:
    from tests.support.archive import write_session

    await write_session(tmp_path, "s_w")
    got = await cli("verify", str(tmp_path), "--witness", f"nats://127.0.0.1:{free_port()}")
    assert got.returncode == 2 and "could not read the witness" in got.stderr, got.stderr
    assert "Traceback" not in got.stderr


async def test_verify_after_the_readme_demo_passes_with_open_files(tmp_path: Path) -> None:
    import re

    from tests.support.up import running_up

    data = tmp_path / "data"
    archive = data / "archive"
    async with running_up(data, "--demo", "--speed", "0", "--demo-agents", "3") as up:
        match = re.search(r"Signed by\s+(ed25519:\S+)", up.banner)
        assert match, up.banner
        key = match.group(1)
        assert (
            key == (await cli("archiver", "--print-public-key", "--data", str(data))).stdout.strip()
        )
        await wait_until(
            lambda: len(list(archive.glob("*/*.jsonl*"))) >= 3, 60, "3 sessions archived"
        )
        await wait_until(lambda: any(archive.glob("_checkpoints.*.jsonl")), 30, "a checkpoint log")
        plain = await cli("verify", str(archive))
        assert plain.returncode == 0, plain.stdout[-2000:]
        assert ": open: " in plain.stdout and "BROKEN" not in plain.stdout
        signed = await cli("verify", str(archive), "--key", key, "--witness", up.nats_url)
        assert signed.returncode == 0, signed.stdout[-2000:] + signed.stderr[-2000:]
    log = (data / "nats" / "nats-server.log").read_text()
    assert [line for line in log.splitlines() if "Violation" in line][:10] == []
