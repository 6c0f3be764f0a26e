"""FastAPI dependencies shared by the routes: the typed app state and the token's claims."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from agentcast.tokens import Claims, Scope
from gateway.state import GatewayState, state_of


async def _state(conn: HTTPConnection) -> GatewayState:
    # async: FastAPI runs a plain function dependency in a thread, a hop per request.
    return state_of(conn)


State = Annotated[GatewayState, Depends(_state)]


def require(scope: Scope) -> Callable[[HTTPConnection], Awaitable[Claims]]:
    """A dependency: the request's claims, which must grant `scope`."""

    async def _dependency(conn: HTTPConnection) -> Claims:
        auth = state_of(conn).auth
        claims = auth.claims(conn.headers, conn.query_params)
        auth.authorize(claims, scope)
        return claims

    return _dependency


ReadClaims = Annotated[Claims, Depends(require("read"))]
RunClaims = Annotated[Claims, Depends(require("run"))]
