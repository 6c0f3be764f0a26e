"""NATS stall: how fast every API call answers, and /readyz flips, while nats-server is stopped.

    python bench/stall.py [--runs 3] [--workers 2]

Each run starts its own nats-server and `agentcast gateway`, publishes a small
session, then stops the server with SIGSTOP (the TCP connections stay open, as
in a partition or a frozen VM) and, at once and side by side: polls /readyz
(the figure: from the SIGSTOP to its first 503), and calls every API route a
client uses (each call's status, error code, Retry-After and time to answer).
Then SIGCONT, and the time until /readyz says 200 again. Targets (issue 10):
every call within 2 s as a JSON 503 `nats_unavailable` with Retry-After;
/readyz flips within 1 s. Bounded: every call has a 20 s timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _procs
from _feed import NatsTarget
from storm import SESSION, _publish

from agentcast.tokens import mint_token

_CALL_TIMEOUT_S = 20.0
_POLL_S = 0.02


def _calls(token: str) -> dict[str, tuple[str, str, dict[str, object] | None]]:
    return {
        "GET /v1/sessions/{s}": ("GET", f"/v1/sessions/{SESSION}", None),
        "GET /v1/sessions": ("GET", "/v1/sessions", None),
        "POST /v1/runs": ("POST", "/v1/runs", {"prompt": "hello"}),
        "POST /v1/sessions/{s}/cancel": ("POST", f"/v1/sessions/{SESSION}/cancel", None),
        "POST /v1/sessions/{s}/messages": (
            "POST", f"/v1/sessions/{SESSION}/messages", {"text": "more"}
        ),
        "GET /v1/sessions/{s}/events?from=<cursor>": (
            "GET", f"/v1/sessions/{SESSION}/events?from=1", None
        ),
    }  # fmt: skip


async def _call(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, object] | None
) -> dict[str, object]:
    start = time.perf_counter()
    try:
        answer = await client.request(method, path, json=body, timeout=_CALL_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return {"status": type(exc).__name__, "ms": round((time.perf_counter() - start) * 1e3)}
    ms = (time.perf_counter() - start) * 1e3
    try:
        code = answer.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = answer.headers.get("content-type", "")
    return {"status": answer.status_code, "code": code,
            "retry_after": answer.headers.get("retry-after"), "ms": round(ms, 1)}  # fmt: skip


async def _first(client: httpx.AsyncClient, status: int, since: float) -> float:
    """Seconds from `since` until /readyz answers `status` (polled; bounded)."""
    while time.perf_counter() - since < _CALL_TIMEOUT_S * 3:
        try:
            answer = await client.get("/readyz", timeout=_CALL_TIMEOUT_S)
            if answer.status_code == status:
                return round(time.perf_counter() - since, 3)
        except httpx.HTTPError:
            pass
        await asyncio.sleep(_POLL_S)
    return float("inf")


async def stall(workers: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="agentcast-stall-") as name:
        tmp = Path(name)
        with _procs.nats(tmp) as nats, _procs.gateway(nats.admin_url, tmp, workers) as srv:
            await _publish(NatsTarget(nats.admin_url), 5)
            token = mint_token(_procs.SECRET, scopes=["read", "run"], ttl_s=3600)
            headers = {"Authorization": f"Bearer {token}"}
            url = f"http://127.0.0.1:{srv.port}"
            assert nats.pid is not None
            async with httpx.AsyncClient(base_url=url, headers=headers) as client:
                os.kill(nats.pid, signal.SIGSTOP)
                stopped = time.perf_counter()
                try:
                    flip = asyncio.create_task(_first(client, 503, stopped))
                    calls = _calls(token)
                    answers = await asyncio.gather(*(_call(client, *c) for c in calls.values()))
                    readyz_flip_s = await flip
                finally:
                    os.kill(nats.pid, signal.SIGCONT)
                resumed = time.perf_counter()
                readyz_back_s = await _first(client, 200, resumed)
    return {"readyz_flip_s": readyz_flip_s, "readyz_back_s": readyz_back_s,
            "calls": dict(zip(calls, answers, strict=True))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    _procs.raise_nofile()
    results = []
    for i in range(args.runs):
        result = asyncio.run(stall(args.workers))
        print(json.dumps({"run": i + 1, **result}), flush=True)
        results.append(result)
    print(f"\n## NATS stall (SIGSTOP): medians of {args.runs} (workers={args.workers})")
    print("| call | answers (all runs) | median ms | max ms |")
    print("|---|---|---|---|")
    for call in results[0]["calls"]:  # type: ignore[attr-defined]
        seen = [r["calls"][call] for r in results]  # type: ignore[index]
        kinds = sorted({f"{a['status']} {a.get('code', '')} Retry-After {a.get('retry_after')}"
                        for a in seen})  # fmt: skip
        ms = [float(a["ms"]) for a in seen]
        print(f"| {call} | {'; '.join(kinds)} | {statistics.median(ms):.0f} | {max(ms):.0f} |")
    for key in ("readyz_flip_s", "readyz_back_s"):
        values = [float(r[key]) for r in results]  # type: ignore[arg-type]
        print(f"| /readyz {key} | {values} | {statistics.median(values) * 1e3:.0f} "
              f"| {max(values) * 1e3:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
