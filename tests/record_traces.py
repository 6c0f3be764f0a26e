"""Record what the real Claude Code CLI prints for each scripted scenario.

    python tests/record_traces.py            # every trace
    python tests/record_traces.py quick bash # some of them

Each `<name>.jsonl` is the raw `claude -p --output-format stream-json --verbose
--include-partial-messages` output of one run against the scripted model at
speed 0, in a fresh workspace and config directory. They are shipped in
`producer/traces/`: the synthetic producer replays them, and the normalizer's
tests check them. Paths, ids and timestamps differ on every recording.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import claude_agent_sdk

HERE = Path(__file__).resolve().parent
TRACES = HERE.parent / "producer" / "traces"
sys.path.insert(0, str(HERE.parent))

from tests.support.scripted import ScriptedModel

_TIMEOUT_S = 120
_FILE_TOOLS = ["Bash", "Read", "Write", "Edit"]
_TASK_TOOLS = ["TaskCreate", "TaskUpdate", "TaskList", "TaskGet", "TodoWrite"]


@dataclass(frozen=True)
class Recording:
    name: str
    prompt: str
    allowed_tools: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # A first prompt whose session the recorded prompt resumes (not recorded).
    before: str | None = None


RECORDINGS = [
    Recording(
        "coding_tasks",
        "Write a word count script, run it and fix any bug.",
        _FILE_TOOLS + _TASK_TOOLS,
    ),
    Recording(
        "coding_todowrite",
        "Write a word count script, run it and fix any bug.",
        _FILE_TOOLS + _TASK_TOOLS,
        env={"CLAUDE_CODE_ENABLE_TASKS": "0"},
    ),
    Recording("quick", "[scenario:quick] Say hello.", []),
    Recording("bash", "[scenario:bash] Run a shell command.", ["Bash"]),
    Recording("api_error", "[scenario:api_error] This request fails.", []),
    Recording(
        "followup",
        "[scenario:followup] What was my first message?",
        [],
        before="[scenario:quick] Remember the word teal.",
    ),
    Recording(
        "subagent", "[scenario:subagent] Check the shell via a sub-agent.", ["Agent", "Bash"]
    ),
    Recording("slow", "[scenario:slow] Tell me something long.", []),
    Recording("big_output", "[scenario:big_output] Print a lot.", ["Bash"]),
]


def cli_path() -> str:
    bundled = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    found = str(bundled) if bundled.exists() else shutil.which("claude")
    if not found:
        raise SystemExit("Claude Code CLI not found (bundled with claude-agent-sdk)")
    return found


async def run_cli(
    prompt: str, rec: Recording, env: dict[str, str], cwd: Path, resume: str | None = None
) -> bytes:
    args = [cli_path(), "-p", prompt, "--output-format", "stream-json", "--verbose"]
    args += ["--include-partial-messages", "--permission-mode", "acceptEdits"]
    if rec.allowed_tools:
        args += ["--allowedTools", ",".join(rec.allowed_tools)]
    if resume:
        args += ["--resume", resume]
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), _TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if not out.strip():
        raise RuntimeError(
            f"{rec.name}: no output (exit {proc.returncode}): {err.decode()[-2000:]}"
        )
    return out


def session_id(output: bytes) -> str:
    first = json.loads(output.splitlines()[0])
    return str(first["session_id"])


async def record(rec: Recording, model: ScriptedModel) -> float:
    with tempfile.TemporaryDirectory(prefix=f"agentcast-{rec.name}-") as tmp:
        workspace, config = Path(tmp, "workspace"), Path(tmp, "config")
        workspace.mkdir()
        config.mkdir()
        env = {**os.environ, **model.cli_env(config_dir=config), **rec.env}
        resume = None
        if rec.before is not None:
            resume = session_id(await run_cli(rec.before, rec, env, workspace))
        started = time.monotonic()
        output = await run_cli(rec.prompt, rec, env, workspace, resume=resume)
        elapsed = time.monotonic() - started
    (TRACES / f"{rec.name}.jsonl").write_bytes(output)
    return elapsed


async def main(names: list[str]) -> None:
    chosen = [r for r in RECORDINGS if not names or r.name in names]
    unknown = set(names) - {r.name for r in RECORDINGS}
    if unknown:
        raise SystemExit(f"unknown recordings: {', '.join(sorted(unknown))}")
    async with ScriptedModel(speed=0) as model:
        for rec in chosen:
            elapsed = await record(rec, model)
            lines = (TRACES / f"{rec.name}.jsonl").read_bytes().count(b"\n")
            print(f"{rec.name:18} {lines:5d} lines  {elapsed:5.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="recordings to make (default: all)")
    asyncio.run(main(parser.parse_args().names))
