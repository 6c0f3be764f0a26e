"""Checkpoint cost: signing a checkpoint of 10,000 session files, and verifying the archive.

    python bench/checkpoint_bench.py [--sessions 10000] [--runs 3]

Each run: a fresh archive of `--sessions` files (one short run each, written
by the real ArchiveWriter), then the real Checkpointer (no witness): the
full checkpoint a start writes, a tick that notes every head (all changed)
and writes a checkpoint of all of them, a tick with nothing changed, and
`verify --key` of the whole archive. Prints one JSON object per run and the
median; bench/README.md records the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consumers.archive.checkpointer import Checkpointer
from tests.support.archive import append, writer
from tests.support.events import build_events, simple_run


async def one_run(sessions: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "archive"
        w = writer(root)
        names = [f"s_{i:05d}" for i in range(sessions)]
        for s in names:
            append(w, build_events(s, simple_run(3)))
        await w.flush()
        cp = Checkpointer(root, "bench", Path(tmp) / "archive.key", interval_s=0)
        t0 = time.perf_counter()
        await cp.start([])  # learns every head from the files on disk
        start_s = time.perf_counter() - t0
        for s in names:  # every session goes on: each head changes
            append(w, build_events(s, simple_run(1), run=2, first_seq=11))
        await w.flush()
        t0 = time.perf_counter()
        await cp.tick(w.chains())
        changed_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        await cp.tick(w.chains())
        idle_s = time.perf_counter() - t0
        w.close()
        log_bytes = cp.log.stat().st_size
        t0 = time.perf_counter()
        verified = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "agentcast.cli", "verify", str(root), "--key", cp.public_key],
            capture_output=True,
            text=True,
            check=False,
        )
        verify_s = time.perf_counter() - t0
        assert verified.returncode == 0, verified.stdout[-2000:]
    return {
        "sessions": sessions,
        "start_checkpoint_ms": round(start_s * 1e3, 1),
        "all_changed_checkpoint_ms": round(changed_s * 1e3, 1),
        "unchanged_checkpoint_ms": round(idle_s * 1e3, 1),
        "log_kb": round(log_bytes / 1e3),
        "verify_key_s": round(verify_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    for _ in range(args.runs):
        result = asyncio.run(one_run(args.sessions))
        print(json.dumps(result), flush=True)
        results.append(result)
    print(json.dumps({"median": {k: statistics.median(r[k] for r in results) for k in results[0]}}))


if __name__ == "__main__":
    main()
