"""Bearer-token checks over agentcast/tokens.py, for HTTP dependencies and WebSocket ops.

401: no token, or one that is malformed, badly signed, expired, older than
`token_max_lifetime_s` (whatever its `exp` says) or revoked.
403: a valid token without the scope, or for a session outside its glob.
EventSource and WebSocket clients may pass the token as `?token=`.

A verified token is remembered (its exact string, a bounded cache): a
reconnect storm presents one token thousands of times, and checking its
HMAC signature each time was a tenth of a request's cost (bench/README.md,
storm). Expiry, the lifetime ceiling and revocation are still checked on
every use; only the signature and the claims' parsing are not repeated.
"""

from __future__ import annotations

import time
from collections.abc import Container, Mapping
from typing import Final

from agentcast.sessions import validate_session_id
from agentcast.tokens import Claims, Scope, TokenError, TokenTooOld, jti_key, verify_token
from gateway.errors import ApiError
from gateway.telemetry import Stats

_VERIFIED_MAX: Final = 4096
"""Tokens remembered as verified; past this the oldest is forgotten (and verified again)."""


class Authenticator:
    def __init__(
        self,
        secret: str,
        stats: Stats,
        *,
        max_lifetime_s: float | None = None,
        revoked: Container[str] = frozenset(),
    ) -> None:
        self._secret = secret
        self._stats = stats
        self._max_lifetime_s = max_lifetime_s
        self._revoked = revoked
        self._verified: dict[str, Claims] = {}

    def claims(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Claims:
        """The verified claims of the request's token; raises a 401 ApiError."""
        token = token_of(headers, query)
        if not token:
            self._stats.auth_failures += 1
            raise ApiError(
                401, "unauthorized", "missing bearer token (Authorization header or ?token=)"
            )
        try:
            claims = self._verify(token)
        except TokenError as exc:
            self._stats.auth_failures += 1
            if isinstance(exc, TokenTooOld):
                self._stats.hit("token_max_lifetime_s")
            raise ApiError(401, "unauthorized", str(exc)) from exc
        if jti_key(claims.jti) in self._revoked:
            self._stats.auth_failures += 1
            raise ApiError(401, "token_revoked", "token revoked")
        return claims

    def _verify(self, token: str) -> Claims:
        claims = self._verified.get(token)
        if claims is None:
            claims = verify_token(self._secret, token, max_lifetime_s=self._max_lifetime_s)
            if len(self._verified) >= _VERIFIED_MAX:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = claims
            return claims
        now = time.time()
        if claims.exp <= now:  # as PyJWT decides (no leeway)
            del self._verified[token]
            raise TokenError("token expired")
        if self._max_lifetime_s is not None and now > claims.iat + self._max_lifetime_s:
            del self._verified[token]
            raise TokenTooOld("token expired (older than the gateway's maximum token lifetime)")
        return claims

    def authorize(self, claims: Claims, scope: Scope, session: str | None = None) -> None:
        """Raise a 403 ApiError unless `claims` grant `scope` (on `session`, if given)."""
        if not claims.has_scope(scope):
            self._stats.auth_failures += 1
            raise ApiError(403, "forbidden", f"token lacks scope {scope!r}")
        if session is not None and not claims.allows_session(session):
            self._stats.auth_failures += 1
            raise ApiError(403, "forbidden", f"token does not cover session {session!r}")


def token_of(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return query.get("token") or None


def checked_session(auth: Authenticator, claims: Claims, scope: Scope, session: str) -> str:
    """A session id that is valid (400 otherwise) and that `claims` may use (403 otherwise)."""
    try:
        validate_session_id(session)
    except ValueError as exc:
        raise ApiError(400, "invalid_session", str(exc)) from exc
    auth.authorize(claims, scope, session)
    return session
