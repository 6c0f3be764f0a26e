"""Gateways for the limit tests: one per test module, with the limits it crosses set low."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

import pytest

from agentcast.embedded import EmbeddedNats
from tests.support.gateway import GatewayProcess
from tests.support.nats import role_env

LIMIT_HITS: Final = "agentcast_gateway_limit_hits_total"
"""The counter of refusals, labelled by the setting crossed."""


def gateway_fixture(env: dict[str, str], *args: str) -> Callable[..., Iterator[GatewayProcess]]:
    """A module-scoped fixture: a gateway with `env` (AGENTCAST_* limits) and command-line
    `args` on the test server."""

    @pytest.fixture(scope="module")
    def gw(
        nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[GatewayProcess]:
        proc = GatewayProcess(
            nats_server.url, tmp_path_factory.mktemp("limits-gw"), None, *args,
            env={**role_env(nats_server, "gateway"), **env},
        )  # fmt: skip
        proc.start()
        try:
            yield proc
        finally:
            proc.stop()

    return gw
