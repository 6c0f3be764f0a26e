"""Bearer tokens: HS256 JWTs with scopes and a session glob (SPEC "Auth").

Claims: `scope` (a list of "read", "run", "admin"; admin implies the others),
`sessions` (an fnmatch glob over session ids, `*` for all), `exp`, `iat`,
`jti`. The secret is Settings.jwt_secret, else `<data_dir>/jwt_secret`
(created with mode 0600 on first use), so the gateway, `agentcast token` and
`agentcast up` sharing a data directory agree on it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import secrets
import time
import uuid
from pathlib import Path
from typing import Final, Literal

import jwt
import msgspec

from agentcast.errors import AgentcastError
from agentcast.sessions import new_session_id
from agentcast.settings import Settings

Scope = Literal["read", "run", "admin"]
SCOPES: Final[frozenset[str]] = frozenset({"read", "run", "admin"})
ALGORITHM: Final = "HS256"
SECRET_FILE: Final = "jwt_secret"
_TTL = re.compile(r"(\d+)([smhd]?)")
_PLAIN_JTI = re.compile(r"[A-Za-z0-9_-]{1,128}")
_GLOB_PREFIX = re.compile(r"[A-Za-z0-9_-]*")
"""The literal start of a session glob, up to its first wildcard."""
_UNIT_S: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class TokenError(AgentcastError):
    """A token that is missing, malformed, badly signed or expired."""

    code = "unauthorized"


class TokenTooOld(TokenError):
    """A token issued longer ago than the gateway's maximum lifetime (`token_max_lifetime_s`)."""


class Claims(msgspec.Struct, frozen=True, kw_only=True):
    scope: list[str]
    sessions: str = "*"
    exp: int
    iat: int
    jti: str

    def has_scope(self, scope: Scope) -> bool:
        return scope in self.scope or "admin" in self.scope

    def allows_session(self, session: str) -> bool:
        return fnmatch.fnmatchcase(session, self.sessions)

    def new_session(self) -> str:
        """A server-generated session id inside the glob when it can be: a glob with a literal
        prefix (`team_*`) gets `team_<random>`; others the default `s_<random>`."""
        prefix = _GLOB_PREFIX.match(self.sessions)
        if prefix is not None and prefix.group():
            session = new_session_id(prefix.group())
            if self.allows_session(session):
                return session
        return new_session_id()


def jti_key(jti: str) -> str:
    """The token id as a NATS KV key (stream slots, revocations): itself when it is a plain
    id (ours are hex), else a digest of it."""
    if _PLAIN_JTI.fullmatch(jti):
        return jti
    return "h_" + hashlib.sha256(jti.encode()).hexdigest()[:40]


def load_secret(settings: Settings) -> str:
    """The signing secret: the setting, else the data directory's file (created 0600)."""
    if settings.jwt_secret:
        return settings.jwt_secret
    path = settings.resolved_data_dir() / SECRET_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another role created it first
        return Path(path).read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    return secret


def parse_ttl(value: str) -> int:
    """Seconds in `90`, `30s`, `15m`, `1h`, `7d`; raises ValueError."""
    match = _TTL.fullmatch(value.strip().lower())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"invalid ttl {value!r}: expected e.g. 30s, 15m, 1h, 7d")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def parse_scopes(value: str) -> list[str]:
    """`read,run` -> ["read", "run"]; raises ValueError on an unknown scope."""
    scopes = [s.strip() for s in value.split(",") if s.strip()]
    unknown = [s for s in scopes if s not in SCOPES]
    if not scopes or unknown:
        raise ValueError(f"invalid scope {value!r}: expected a list of {', '.join(sorted(SCOPES))}")
    return list(dict.fromkeys(scopes))


def mint_token(
    secret: str,
    *,
    scopes: list[str],
    sessions: str = "*",
    ttl_s: int = 3600,
    now: float | None = None,
) -> str:
    """A signed token; `scopes` must be a subset of SCOPES."""
    unknown = set(scopes) - SCOPES
    if unknown or not scopes:
        raise ValueError(f"invalid scopes {scopes!r}")
    if not sessions:
        raise ValueError("sessions glob must not be empty")
    iat = int(time.time() if now is None else now)
    claims = {
        "scope": list(scopes),
        "sessions": sessions,
        "iat": iat,
        "exp": iat + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str, *, max_lifetime_s: float | None = None) -> Claims:
    """The claims of a valid token; raises TokenError saying why it is not.

    With `max_lifetime_s`, a token issued (`iat`) longer ago than that is
    refused as expired, whatever its `exp` says.
    """
    try:
        raw = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "iat", "jti", "scope"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token expired") from exc
    except jwt.PyJWTError as exc:
        raise TokenError(f"invalid token: {exc}") from exc
    try:
        claims = msgspec.convert(raw, Claims)
    except msgspec.ValidationError as exc:
        raise TokenError(f"invalid token claims: {exc}") from exc
    if not set(claims.scope) <= SCOPES:
        raise TokenError("invalid token claims: unknown scope")
    if max_lifetime_s is not None and time.time() > claims.iat + max_lifetime_s:
        raise TokenTooOld("token expired (older than the gateway's maximum token lifetime)")
    return claims
