"""FastAPI dependencies shared by the routes: the typed app state and the token's claims."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Final

from fastapi import Depends, Security
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from agentcast.tokens import Claims, Scope
from gateway.state import GatewayState, state_of


async def _state(conn: HTTPConnection) -> GatewayState:
    # async: FastAPI runs a plain function dependency in a thread, a hop per request.
    return state_of(conn)


State = Annotated[GatewayState, Depends(_state)]

# Declared so the OpenAPI schema says how to authenticate (either one); the
# Authenticator reads the token itself, the same way for HTTP and WebSocket.
_BEARER: Final = HTTPBearer(auto_error=False, description="a token from `agentcast token`")
_QUERY_TOKEN: Final = APIKeyQuery(
    name="token", auto_error=False, description="the same token, for EventSource clients"
)


def require(scope: Scope) -> Callable[..., Awaitable[Claims]]:
    """A dependency: the request's claims, which must grant `scope`."""

    async def _dependency(
        conn: HTTPConnection,
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
        _query: Annotated[str | None, Security(_QUERY_TOKEN)],
    ) -> Claims:
        auth = state_of(conn).auth
        claims = auth.claims(conn.headers, conn.query_params)
        auth.authorize(claims, scope)
        return claims

    return _dependency


ReadClaims = Annotated[Claims, Depends(require("read"))]
RunClaims = Annotated[Claims, Depends(require("run"))]
