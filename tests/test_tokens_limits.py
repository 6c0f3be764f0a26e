"""Tokens: a maximum lifetime the gateway enforces whatever `exp` says, revocation by jti
(`agentcast token --revoke`: new requests refused, open streams ended), generated session ids
inside a token's glob."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import jwt
import pytest
import websockets

from agentcast.cli import main
from agentcast.embedded import EmbeddedNats
from agentcast.tokens import Claims, jti_key, mint_token
from gateway.auth import Authenticator
from gateway.errors import ApiError
from gateway.telemetry import Stats
from tests.support.gateway import SECRET, GatewayProcess, token, ws_reply
from tests.support.limits import LIMIT_HITS, gateway_fixture

gw = gateway_fixture({"AGENTCAST_TOKEN_MAX_LIFETIME_S": "3600"})


def _bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def test_a_token_older_than_the_maximum_lifetime_is_refused_whatever_its_exp(
    gw: GatewayProcess,
) -> None:
    old = mint_token(SECRET, scopes=["read"], ttl_s=2**40, now=time.time() - 7200)
    young = mint_token(SECRET, scopes=["read"], ttl_s=2**40)
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        refused = await http.get("/v1/sessions", headers=_bearer(old))
        assert refused.status_code == 401
        assert "maximum token lifetime" in refused.json()["error"]["message"]
        assert gw.metric(LIMIT_HITS, limit="token_max_lifetime_s") >= 1
        assert (await http.get("/v1/sessions", headers=_bearer(young))).status_code == 200


def _revoke(nats_server: EmbeddedNats, value: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["token", "--revoke", value, "--nats", nats_server.admin_url]) == 0
    return capsys.readouterr().out.strip()


async def test_a_revoked_token_is_refused_and_its_open_streams_end(
    gw: GatewayProcess, nats_server: EmbeddedNats, capsys: pytest.CaptureFixture[str]
) -> None:
    tok, other = token(), token()
    jti = jwt.decode(tok, options={"verify_signature": False})["jti"]
    async with (
        httpx.AsyncClient(base_url=gw.url, timeout=30) as http,
        http.stream("GET", "/v1/events", params={"from": "now"}, headers=_bearer(tok)) as sse,
        websockets.connect(f"{gw.ws_url}?token={tok}") as ws,
    ):
        assert sse.status_code == 200
        await ws.send(json.dumps({"op": "ping"}))
        assert (await ws_reply(ws))["op"] == "pong"
        assert await asyncio.to_thread(_revoke, nats_server, tok, capsys) == jti

        lines: list[str] = []
        async with asyncio.timeout(30):
            async for line in sse.aiter_lines():  # ends when the gateway ends the stream
                lines.append(line)
        assert "event: error" in lines and any("token_revoked" in line for line in lines)
        frame = await ws_reply(ws, timeout=30)
        assert frame["op"] == "error" and frame["code"] == "token_revoked"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008

        refused = await http.get("/v1/sessions", headers=_bearer(tok))
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_revoked"
        assert (await http.get("/v1/sessions", headers=_bearer(other))).status_code == 200


def test_minting_past_the_maximum_lifetime_is_a_clean_cli_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["token", "--ttl", "400d", "--data", str(tmp_path)])
    out = capsys.readouterr()
    assert exited.value.code == 2 and "maximum token lifetime" in out.err and out.out == ""


@pytest.mark.parametrize(
    ("glob", "prefix"),
    [
        ("team_*", "team_"),
        ("a-b_c*", "a-b_c"),
        ("*", "s_"),
        ("team_?x", "s_"),
        ("x" * 60 + "*", "x" * 60),
    ],
)
def test_a_generated_session_id_falls_inside_a_glob_with_a_literal_prefix(
    glob: str, prefix: str
) -> None:
    claims = Claims(scope=["run"], sessions=glob, exp=0, iat=0, jti="j")
    session = claims.new_session()
    assert session.startswith(prefix) and len(session) <= 64
    assert claims.allows_session(session) or prefix == "s_"


def test_any_jti_maps_to_a_plain_kv_key() -> None:
    assert jti_key("0123abcdef") == "0123abcdef"
    for odd in ("a b", "x.y.>", "ü", "*", "a" * 300):
        key = jti_key(odd)
        assert key.startswith("h_") and key.replace("_", "").isalnum() and key == jti_key(odd)


async def test_a_remembered_token_still_expires_ages_out_and_is_revoked() -> None:
    """Verified tokens are cached (gateway/auth.py); every later use still checks the rest."""
    revoked: set[str] = set()
    # iat is whole seconds: exp is 1-2 s ahead, the ceiling 2-3 s.
    auth = Authenticator(SECRET, Stats(), max_lifetime_s=3, revoked=revoked)
    headers = _bearer(mint_token(SECRET, scopes=["read"], ttl_s=2))
    aging = _bearer(mint_token(SECRET, scopes=["read"], ttl_s=3600))
    banned = _bearer(mint_token(SECRET, scopes=["read"], ttl_s=3600))
    for h in (headers, aging, banned):
        assert auth.claims({"authorization": h["Authorization"]}, {}).has_scope("read")
    revoked.add(jti_key(auth.claims({"authorization": banned["Authorization"]}, {}).jti))
    with pytest.raises(ApiError) as refused:
        auth.claims({"authorization": banned["Authorization"]}, {})
    assert refused.value.code == "token_revoked"
    await asyncio.sleep(3.2)  # past the first token's exp and the second's lifetime ceiling
    for h, why in ((headers, "token expired"), (aging, "maximum token lifetime")):
        with pytest.raises(ApiError) as refused:
            auth.claims({"authorization": h["Authorization"]}, {})
        assert refused.value.status == 401 and why in refused.value.message
