"""How late the event loop runs: the time everything in the process waited behind one turn.

Every request, health probe and live delivery of a gateway process runs on
its one event loop, so a turn that takes 200 ms delays all of them by up to
200 ms, whatever the cause (a burst of requests, a collection, a slow
callback). A timer due every 10 ms measures it: how late it fires is the lag.
The lags go into a histogram (`agentcast_gateway_loop_lag_seconds`), so an
operator (or bench/storm.py) sees how often and how long the loop stalled.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from typing import Final

INTERVAL_S: Final = 0.01
BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class LoopLag:
    """Lags seen by a 10 ms timer, as histogram counts (cumulative at scrape time)."""

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_S) + 1)
        """Observations per bucket (the last: above the largest bound)."""
        self.total_s = 0.0

    def observe(self, lag_s: float) -> None:
        self.counts[bisect_left(BUCKETS_S, lag_s)] += 1
        self.total_s += lag_s

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + INTERVAL_S
            await asyncio.sleep(INTERVAL_S)
            self.observe(max(0.0, loop.time() - due))

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs, as Prometheus histograms have them."""
        out, running = [], 0
        for bound, count in zip((*map(str, BUCKETS_S), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out
