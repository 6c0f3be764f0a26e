"""`agentcast up` hands every role its own NATS user, and the roles need no more than theirs."""

from __future__ import annotations

import asyncio
import json
import stat
import uuid
from pathlib import Path

import httpx
import pytest

from agentcast.bus_auth import ROLES
from tests.support.gateway import read_sse
from tests.support.roles import cli
from tests.support.up import Up, running_up
from tests.support.worker import processes_in

pytestmark = pytest.mark.timeout(180)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _children(data: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """role -> (command line, environment) of up's children (found by the data dir in argv)."""
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv]
        if "agentcast.cli" not in words or str(data) not in words:
            continue
        role = words[words.index("agentcast.cli") + 1]
        env = dict(e.decode(errors="replace").partition("=")[::2] for e in environ if b"=" in e)
        found[role] = (" ".join(words), env)
    return found


async def _agent_environments(data: Path) -> list[dict[str, str]]:
    """The environments of agent processes (their cwd is a session workspace), once some run."""
    for _ in range(300):  # bounded: demo agents start runs on their own
        found = []
        for pid in processes_in(data / "workspaces"):
            try:
                raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            found.append(dict(e.decode(errors="replace").partition("=")[::2] for e in raw if e))
        if found:
            return found
        await asyncio.sleep(0.05)
    return []


async def _a_run_is_archived_and_summarized(up: Up) -> None:
    """Worker, archiver, metrics and gateway each did their part of a real run."""
    headers = {"Authorization": f"Bearer {up.token}"}
    async with httpx.AsyncClient(base_url=up.base, headers=headers, timeout=5) as client:
        for _ in range(600):  # bounded: demo agents finish runs on their own
            sessions = (await client.get("/v1/sessions")).json()["sessions"]
            done = [s for s in sessions if s["state"] == "completed"]
            archived = [
                p
                for p in (up.data / "archive").glob("*/*.jsonl*")
                if b"run.completed" in p.read_bytes()
            ]
            if done and archived:
                # Replay (direct gets) and live (republished subjects) through the gateway.
                path = f"/v1/sessions/{done[0]['session']}/events"
                replayed = await read_sse(client, path, 3, headers=headers, timeout=30)
                assert {e.event for e in replayed} & {"run.queued", "run.started"}
                firehose = await read_sse(client, "/v1/events", 1, headers=headers, timeout=30)
                assert firehose
                progress = await read_sse(client, "/v1/progress", 2, headers=headers, timeout=30)
                assert progress
                return
            await asyncio.sleep(0.2)
    raise AssertionError("no completed run made it to the archive and the progress snapshots")


async def _a_run_and_a_follow_up_through_the_gateway(up: Up) -> None:
    """runs.submit from the gateway, then a follow-up over the worker's control subject."""
    headers = {"Authorization": f"Bearer {up.token}"}
    session = "auth_" + uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(base_url=up.base, headers=headers, timeout=10) as client:

        async def completed(run: int) -> None:
            for _ in range(600):  # bounded
                got = await client.get(f"/v1/sessions/{session}")
                snap = got.json() if got.status_code == 200 else {}
                if snap.get("state") == "completed" and snap.get("run") == run:
                    return
                await asyncio.sleep(0.1)
            raise AssertionError(f"run {run} of {session} never completed")

        posted = await client.post("/v1/runs", json={"session": session, "prompt": "hello"})
        assert posted.status_code == 202, posted.text
        await completed(1)
        # The worker still holds the session: it answers on agentcast.ctl.<session>.
        again = await client.post(f"/v1/sessions/{session}/messages", json={"text": "again"})
        assert again.status_code == 200 and again.json()["run"] == 2, again.text
        await completed(2)


async def test_up_gives_each_role_its_own_user_and_none_is_refused_anything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running_up(data, "--demo", "--speed", "0", "--demo-agents", "2") as up:
        passwords = json.loads((data / "credentials.json").read_text())
        assert set(passwords) == set(ROLES)
        assert up.nats_url.startswith(f"nats://admin:{passwords['admin']}@127.0.0.1:")
        for secret in ("credentials.json", "nats.url", "nats/nats-server.conf"):
            assert _mode(data / secret) == 0o600, secret
        assert (data / "nats.url").read_text().strip() == up.nats_url

        children = _children(data)
        for role in ("worker", "gateway", "archiver", "metrics"):
            argv, env = children[role]
            assert env["AGENTCAST_NATS_USER"] == role
            assert env["AGENTCAST_NATS_PASSWORD"] == passwords[role]
            assert not any(pw in argv for pw in passwords.values()), f"{role}: password in argv"

        agents = await _agent_environments(data)
        assert agents and not any("AGENTCAST_NATS_PASSWORD" in env for env in agents)
        await _a_run_is_archived_and_summarized(up)
        await _a_run_and_a_follow_up_through_the_gateway(up)
        # Client commands next to up need no flags: they find the admin URL in the data dir.
        tail = await cli("tail", "--all", "--data", str(data), "--json", "--until-done")
        assert tail.returncode in (0, 1), tail.stderr
        assert '"type":"run.started"' in tail.stdout.replace(" ", "")
        bench = await cli(
            "bench", "produce", "--data", str(data), "--sessions", "2", "--rate", "20",
            "--seconds", "1", "--json",
        )  # fmt: skip
        assert bench.returncode == 0 and json.loads(bench.stdout)["events"] > 0, bench.stderr

    for log_file in (data / "logs").glob("*.log"):
        assert "differs from this process's settings" not in log_file.read_text(), log_file
    # nats-server logs "Publish Violation" / "Subscription Violation" (the client hears
    # "Permissions Violation"), and "Authorization Violation" for a refused login.
    log = (data / "nats" / "nats-server.log").read_text()
    assert [line for line in log.splitlines() if "Violation" in line][:10] == []


async def test_up_reuses_its_credentials_on_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running_up(data) as up:
        first = up.nats_url
    before = (data / "credentials.json").read_text()
    async with running_up(data) as up:
        assert up.nats_url.split("@")[0] == first.split("@")[0]
    assert (data / "credentials.json").read_text() == before
