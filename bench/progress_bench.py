"""How well progress tracks reality: percent against the elapsed fraction of each run's wall time.

    python bench/progress_bench.py [--runs 4] [--fresh] [--cold] [--data DIR] [--speed 1.0]

Runs the whole system as a user would (`agentcast up --demo --demo-agents 0`:
real nats-server, worker with the real Claude CLI against the scripted model
at realistic pacing, metrics, gateway), submits every scripted scenario in
turn, one run at a time, and polls `GET /v1/sessions/{session}` every 100 ms
while it runs. Per run:

- MAE: mean over the polls of |percent - 100 * elapsed / duration|, where
  elapsed and duration come from the run's own clock (queued .. ended, from
  its final snapshot) and the poll's wall time;
- ETA error: mean over the polls that carry one of |now + eta_ms - end|,
  in seconds and as a share of the run's duration;
- drops: polls whose percent was below the one before (must be 0).

The history lives in the deployment's data dir (`--data`, kept between
invocations as a deployment keeps it; `--fresh` starts it empty), so later
runs use what earlier ones taught the metrics consumer. `--cold` runs each
scenario once on its own empty deployment instead: no history at all.
The followup scenario is a second run in a session whose first run was a
quick one; only the second is measured. Output: one JSON line per run, then
a table per scenario and history depth (how many runs of it came before:
0, 1, 2 or more), with the medians of its runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from agentcast.embedded import free_port

SCENARIOS: dict[str, str] = {
    "coding": "[scenario:coding] Build a small word counter and fix its bug",
    "slow": "[scenario:slow] Explain, at length, how streaming agents works",
    "bash": "[scenario:bash] Say hello from the shell",
    "subagent": "[scenario:subagent] Delegate a shell check to a sub-agent",
    "followup": "[scenario:followup] Thanks! What did I ask you first?",
}
_FIRST_OF_FOLLOWUP = "[scenario:quick] Hello"
_ENDED = ("completed", "failed", "cancelled")
_TOKEN = re.compile(r"\?token=(\S+)")
_POLL_S = 0.1
_RUN_TIMEOUT_S = 120.0


@dataclass
class RunResult:
    scenario: str
    prior_runs: int
    duration_s: float
    polls: int
    mae: float
    eta_err_s: float | None
    eta_err_pct: float | None
    drops: int
    state: str
    trace: list[tuple[float, float, int | None]] | None = None
    """With --trace: (elapsed fraction, percent, eta_ms) at each poll."""


class Deployment:
    """`agentcast up --demo --demo-agents 0` in its own process group, stopped by its PID."""

    def __init__(self, data: Path, speed: float) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        data.mkdir(parents=True, exist_ok=True)
        self.log = (data / "bench-up.log").open("ab")
        env = {**os.environ, "AGENTCAST_METRICS_PORT": str(free_port())}
        cmd = [sys.executable, "-m", "agentcast.cli", "up", "--demo", "--demo-agents", "0"]
        cmd += ["--port", str(self.port), "--data", str(data), "--workers", "1"]
        cmd += ["--speed", str(speed)]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self.log, env=env, start_new_session=True
        )
        self.token = self._wait_banner()
        self.http = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )

    def _wait_banner(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 90
        token = None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace")
            if found := _TOKEN.search(line):
                token = found.group(1)
            if "Press Ctrl+C" in line and token:
                return token
            if time.monotonic() > deadline:
                break
        self.stop()
        raise RuntimeError("agentcast up did not come up (see bench-up.log in the data dir)")

    def submit(self, session: str, prompt: str) -> None:
        self.http.post("/v1/runs", json={"session": session, "prompt": prompt}).raise_for_status()

    def snapshot(self, session: str) -> dict[str, object] | None:
        r = self.http.get(f"/v1/sessions/{session}")
        return r.json() if r.status_code == 200 else None  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def measure(dep: Deployment, scenario: str, prior_runs: int, trace: bool = False) -> RunResult:
    """One run of a scenario, polled every 100 ms until its final snapshot."""
    session = f"bench_{uuid.uuid4().hex[:12]}"
    run = 1
    if scenario == "followup":
        dep.submit(session, _FIRST_OF_FOLLOWUP)
        _poll(dep, session, 1)
        run = 2
    dep.submit(session, SCENARIOS[scenario])
    polls, final = _poll(dep, session, run)
    end_ns = int(final["updated_at"])  # type: ignore[call-overload]
    duration_ns = int(final["duration_ms"]) * 1_000_000  # type: ignore[call-overload]
    start_ns = end_ns - duration_ns
    errors, eta_errors, drops, last = [], [], 0, 0.0
    seen: list[tuple[float, float, int | None]] = []
    for t, snap in polls:
        if not start_ns <= t <= end_ns:
            continue
        percent = float(snap["percent"])  # type: ignore[arg-type]
        drops += percent < last
        last = percent
        errors.append(abs(percent - 100.0 * (t - start_ns) / duration_ns))
        eta = snap.get("eta_ms")
        seen.append((round((t - start_ns) / duration_ns, 3), percent, eta))  # type: ignore[arg-type]
        if isinstance(eta, int) and snap["state"] not in _ENDED:
            eta_errors.append(abs(t + eta * 1_000_000 - end_ns) / 1e9)
    eta_err = statistics.mean(eta_errors) if eta_errors else None
    return RunResult(
        scenario=scenario,
        prior_runs=prior_runs,
        duration_s=round(duration_ns / 1e9, 2),
        polls=len(errors),
        mae=round(statistics.mean(errors), 1) if errors else float("nan"),
        eta_err_s=round(eta_err, 2) if eta_err is not None else None,
        eta_err_pct=round(100 * eta_err / (duration_ns / 1e9), 1) if eta_err is not None else None,
        drops=drops,
        state=str(final["state"]),
        trace=seen if trace else None,
    )


def _poll(
    dep: Deployment, session: str, run: int
) -> tuple[list[tuple[int, dict[str, object]]], dict[str, object]]:
    polls: list[tuple[int, dict[str, object]]] = []
    deadline = time.monotonic() + _RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        t = time.time_ns()
        snap = dep.snapshot(session)
        if snap is not None and snap.get("run") == run:
            polls.append((t, snap))
            if snap["state"] in _ENDED:
                return polls, snap
        time.sleep(max(0.0, _POLL_S - (time.time_ns() - t) / 1e9))
    raise RuntimeError(f"run {run} of {session} did not end within {_RUN_TIMEOUT_S}s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=4, help="runs of each scenario")
    p.add_argument("--data", type=Path, default=Path("/tmp/agentcast-progress-bench"))
    p.add_argument("--fresh", action="store_true", help="start with no history")
    p.add_argument("--cold", action="store_true", help="each scenario once, on an empty deployment")
    p.add_argument("--speed", type=float, default=1.0, help="scripted model pacing (1 = realistic)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--trace", action="store_true", help="each poll in the JSON lines")
    args = p.parse_args()
    scenarios = args.scenarios.split(",")
    results: list[RunResult] = []
    if args.cold:
        for name in scenarios:
            shutil.rmtree(args.data, ignore_errors=True)
            dep = Deployment(args.data, args.speed)
            try:
                results.append(_report(measure(dep, name, 0, args.trace)))
            finally:
                dep.stop()
    else:
        if args.fresh:
            shutil.rmtree(args.data, ignore_errors=True)
        seen = _seen(args.data)
        dep = Deployment(args.data, args.speed)
        try:
            for _ in range(args.runs):
                for name in scenarios:
                    results.append(_report(measure(dep, name, seen.get(name, 0), args.trace)))
                    seen[name] = seen.get(name, 0) + 1
        finally:
            dep.stop()
            _save_seen(args.data, seen)
    _table(results)
    return 0


def _report(result: RunResult) -> RunResult:
    row = asdict(result)
    if row["trace"] is None:
        del row["trace"]
    print(json.dumps(row), flush=True)
    return result


def _seen(data: Path) -> dict[str, int]:
    """How many runs of each scenario this deployment has seen (its history's depth)."""
    path = data / "bench-seen.json"
    return json.loads(path.read_text()) if path.exists() else {}  # type: ignore[no-any-return]


def _save_seen(data: Path, seen: dict[str, int]) -> None:
    (data / "bench-seen.json").write_text(json.dumps(seen))


def _table(results: list[RunResult]) -> None:
    print(f"\n{'scenario':<10} {'prior runs':>10} {'n':>3} {'MAE':>6} {'ETA err s':>10} "
          f"{'ETA err %':>10} {'duration s':>11} {'drops':>6}")  # fmt: skip
    keys = sorted({(r.scenario, min(r.prior_runs, 2)) for r in results})
    for scenario, depth in keys:
        rows = [r for r in results if r.scenario == scenario and min(r.prior_runs, 2) == depth]
        eta = [r.eta_err_s for r in rows if r.eta_err_s is not None]
        eta_pct = [r.eta_err_pct for r in rows if r.eta_err_pct is not None]
        print(
            f"{scenario:<10} {('2+' if depth == 2 else str(depth)):>10} {len(rows):>3} "
            f"{statistics.median(r.mae for r in rows):>6.1f} "
            f"{(f'{statistics.median(eta):.2f}' if eta else '-'):>10} "
            f"{(f'{statistics.median(eta_pct):.1f}' if eta_pct else '-'):>10} "
            f"{statistics.median(r.duration_s for r in rows):>11.2f} "
            f"{sum(r.drops for r in rows):>6}"
        )


if __name__ == "__main__":
    sys.exit(main())
