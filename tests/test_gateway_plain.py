"""The plain path: the stream, resume, slow-client and shutdown tests again, with the fast path off.

`AGENTCAST_GATEWAY_FASTPATH=0` turns off the Tap (live messages through
nats-py's subscription callbacks, with its pending limits) and the hand-off
(streams written through ASGI `send`, framed by uvicorn). The tests are the
fast path's own, imported here so this module's `gateway` fixtures serve them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentcast.embedded import EmbeddedNats
from tests.support.gateway import GatewayProcess
from tests.support.nats import role_env
from tests.test_gateway_api import (
    test_a_scoped_token_never_reads_another_session_over_websocket,
    test_malformed_frames_get_error_frames_and_the_socket_stays_usable,
    test_operations_endpoints,
)
from tests.test_gateway_fastpath import (
    test_sse_clients_that_go_away_are_released_with_their_subscriptions,
)
from tests.test_gateway_lifecycle import (
    test_resume_is_exact_across_a_gateway_kill_and_restart,
    test_sigterm_tells_sse_clients_to_retry_closes_websockets_1012_and_exits,
)
from tests.test_gateway_progress import (
    test_a_stalled_client_is_dropped_as_lagged_while_others_get_everything,
    test_current_snapshots_then_synced_then_live_ones_by_glob,
    test_heartbeats_keep_an_idle_stream_alive,
)
from tests.test_gateway_slow import (
    test_a_stalled_client_is_dropped_as_lagged_and_never_holds_back_the_others,
)
from tests.test_gateway_stream import (
    test_a_cursor_older_than_retention_is_cursor_expired_naming_the_earliest,
    test_a_run_reaches_sse_and_ws_clients_in_seq_order,
    test_fifty_viewers_of_one_session_get_the_identical_sequence,
    test_firehose_follows_a_glob_and_never_leaks_outside_the_token,
    test_late_joiner_from_start_has_no_gap_or_duplicate_at_the_seam,
    test_sse_reconnect_with_last_event_id_gets_the_rest_exactly_once,
    test_types_filter_keeps_exact_types_and_prefixes_at_any_depth,
    test_ws_resubscribe_from_cursor_gets_the_rest_exactly_once,
)

PLAIN: dict[str, str] = {"AGENTCAST_GATEWAY_FASTPATH": "0"}

__all__ = [
    "test_a_cursor_older_than_retention_is_cursor_expired_naming_the_earliest",
    "test_a_run_reaches_sse_and_ws_clients_in_seq_order",
    "test_a_scoped_token_never_reads_another_session_over_websocket",
    "test_a_stalled_client_is_dropped_as_lagged_and_never_holds_back_the_others",
    "test_a_stalled_client_is_dropped_as_lagged_while_others_get_everything",
    "test_current_snapshots_then_synced_then_live_ones_by_glob",
    "test_fifty_viewers_of_one_session_get_the_identical_sequence",
    "test_firehose_follows_a_glob_and_never_leaks_outside_the_token",
    "test_heartbeats_keep_an_idle_stream_alive",
    "test_late_joiner_from_start_has_no_gap_or_duplicate_at_the_seam",
    "test_malformed_frames_get_error_frames_and_the_socket_stays_usable",
    "test_operations_endpoints",
    "test_resume_is_exact_across_a_gateway_kill_and_restart",
    "test_sigterm_tells_sse_clients_to_retry_closes_websockets_1012_and_exits",
    "test_sse_clients_that_go_away_are_released_with_their_subscriptions",
    "test_sse_reconnect_with_last_event_id_gets_the_rest_exactly_once",
    "test_types_filter_keeps_exact_types_and_prefixes_at_any_depth",
    "test_ws_resubscribe_from_cursor_gets_the_rest_exactly_once",
]


@pytest.fixture(scope="module")
def gateway(
    nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """One plain-path gateway for this module."""
    proc = GatewayProcess(
        nats_server.url,
        tmp_path_factory.mktemp("gateway-plain"),
        env={**role_env(nats_server, "gateway"), **PLAIN},
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def own_gateway(nats_server: EmbeddedNats, tmp_path: Path) -> Iterator[GatewayProcess]:
    """A plain-path gateway this test may kill or stop (not started: call .start())."""
    proc = GatewayProcess(
        nats_server.url, tmp_path / "gw", env={**role_env(nats_server, "gateway"), **PLAIN}
    )
    try:
        yield proc
    finally:
        proc.kill()


async def test_the_plain_gateway_runs_without_the_fast_path(gateway: GatewayProcess) -> None:
    """The switch reaches the process: its log says the Tap is off."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        assert (await http.get("/readyz")).status_code == 200
    assert "fast path off" in gateway.log.read_text()
