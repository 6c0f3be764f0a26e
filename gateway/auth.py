"""Bearer-token checks over agentcast/tokens.py, for HTTP dependencies and WebSocket ops.

401: no token, or one that is malformed, badly signed, expired, older than
`token_max_lifetime_s` (whatever its `exp` says) or revoked.
403: a valid token without the scope, or for a session outside its glob.
EventSource and WebSocket clients may pass the token as `?token=`.
"""

from __future__ import annotations

from collections.abc import Container, Mapping

from agentcast.sessions import validate_session_id
from agentcast.tokens import Claims, Scope, TokenError, TokenTooOld, jti_key, verify_token
from gateway.errors import ApiError
from gateway.telemetry import Stats


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

    def claims(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Claims:
        """The verified claims of the request's token; raises a 401 ApiError."""
        token = token_of(headers, query)
        if not token:
            self._stats.auth_failures += 1
            raise ApiError(
                401, "unauthorized", "missing bearer token (Authorization header or ?token=)"
            )
        try:
            claims = verify_token(self._secret, token, max_lifetime_s=self._max_lifetime_s)
        except TokenError as exc:
            self._stats.auth_failures += 1
            if isinstance(exc, TokenTooOld):
                self._stats.hit("token_max_lifetime_s")
            raise ApiError(401, "unauthorized", str(exc)) from exc
        if jti_key(claims.jti) in self._revoked:
            self._stats.auth_failures += 1
            raise ApiError(401, "token_revoked", "token revoked")
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
