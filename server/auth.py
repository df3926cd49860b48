"""Who may call /mcp, and under which client name: a static token, a tokens file, or JWTs.

Modes: MCP_AUTH_TOKEN (one client, named `mcp-auth-token`) and MCP_TOKENS_FILE (named clients)
may be used together; the JWT mode (MCP_JWT_*) stands alone, its clients named by `sub`.
"""

from __future__ import annotations

import hmac
import logging
from contextvars import ContextVar
from dataclasses import dataclass

import jwt
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.jwks import SIGNING_ALGORITHMS, JwksCache
from server.tokens_file import TokensFile

logger = logging.getLogger(__name__)

STATIC_TOKEN_CLIENT = "mcp-auth-token"  # noqa: S105 - a client name, not a secret
# Clock skew tolerated between this server and the identity provider.
JWT_LEEWAY_SECONDS = 30


@dataclass
class Denial:
    """Why the current request's token was refused, and whose it was if that is known."""

    reason: str = "no bearer token"
    client: str | None = None


_denial: ContextVar[Denial | None] = ContextVar("denial", default=None)


def deny(reason: str, client: str | None = None) -> None:
    """Record why a token is refused, for the one log line the request gets."""
    denial = _denial.get()
    if denial is not None:
        denial.reason, denial.client = reason, client


class NamedTokenVerifier:
    """Accepts MCP_AUTH_TOKEN (compared in constant time) and MCP_TOKENS_FILE's tokens (by SHA-256 digest)."""

    def __init__(self, static_token: str | None, tokens_file: TokensFile | None) -> None:
        self._static = static_token.encode() if static_token is not None else None
        self._tokens_file = tokens_file

    async def verify_token(self, token: str) -> AccessToken | None:
        if self._static is not None and hmac.compare_digest(token.encode(), self._static):
            return AccessToken(token=token, client_id=STATIC_TOKEN_CLIENT, scopes=[])
        if self._tokens_file is not None:
            client = await self._tokens_file.client_for_current(token)
            if client is not None:
                return AccessToken(token=token, client_id=client, scopes=[])
        # A revoked token's owner cannot be named: the server no longer knows the token.
        deny("unknown or revoked token")
        return None


class JwtVerifier:
    """Bearer JWTs signed by a key of the provider's JWKS, for this audience, from this issuer."""

    def __init__(self, keys: JwksCache, issuer: str, audience: str) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            deny("not a JWT")
            return None
        if header.get("alg") not in SIGNING_ALGORITHMS:
            deny("JWT algorithm not accepted")
            return None
        kid = header.get("kid")
        key = await self._keys.key_for(kid if isinstance(kid, str) else None)
        if key is None:
            deny("JWT signed by a key not in the JWKS")
            return None
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=sorted(SIGNING_ALGORITHMS),
                audience=self._audience,
                issuer=self._issuer,
                leeway=JWT_LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.InvalidSignatureError:
            deny("JWT signature not valid")
            return None
        except jwt.PyJWTError as exc:
            # The signature held (PyJWT checks it first), so the subject is the provider's word.
            deny(_claim_problem(exc), _signed_subject(token, key))
            return None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            deny("JWT sub claim empty or not a string")
            return None
        return AccessToken(
            token=token, client_id=subject, scopes=_scopes(claims), expires_at=int(claims["exp"])
        )


def _claim_problem(exc: jwt.PyJWTError) -> str:
    problems: list[tuple[type[jwt.PyJWTError], str]] = [
        (jwt.ExpiredSignatureError, "JWT expired"),
        (jwt.InvalidAudienceError, "JWT for another audience"),
        (jwt.InvalidIssuerError, "JWT from another issuer"),
        (jwt.ImmatureSignatureError, "JWT not valid yet"),
        (jwt.MissingRequiredClaimError, "JWT lacks a required claim (exp, iss, aud, sub)"),
    ]
    return next((text for kind, text in problems if isinstance(exc, kind)), "JWT not valid")


def _signed_subject(token: str, key: jwt.PyJWK) -> str | None:
    try:
        claims = jwt.decode(
            token,
            key=key,
            algorithms=sorted(SIGNING_ALGORITHMS),
            options={
                "verify_exp": False,
                "verify_aud": False,
                "verify_iss": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError:
        return None
    subject = claims.get("sub")
    return subject if isinstance(subject, str) else None


def _scopes(claims: dict[str, object]) -> list[str]:
    scope = claims.get("scope", claims.get("scp"))
    if isinstance(scope, str):
        return scope.split()
    if isinstance(scope, list):
        return [item for item in scope if isinstance(item, str)]
    return []


class DenialLog:
    """Logs one line per refused request (401/403): its client when known, its address, the reason."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        denial = Denial()
        reset = _denial.set(denial)

        async def send_and_log(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (401, 403):
                _log_denial(scope, message["status"], denial)
            await send(message)

        try:
            await self.app(scope, receive, send_and_log)
        finally:
            _denial.reset(reset)


def _log_denial(scope: Scope, status: int, denial: Denial) -> None:
    user = scope.get("user")
    client = user.access_token.client_id if isinstance(user, AuthenticatedUser) else denial.client
    reason = "insufficient scope" if status == 403 else denial.reason
    address = scope.get("client")
    logger.warning(
        "denied %s %s from %s (client %s): %s",
        scope["method"],
        scope["path"],
        f"{address[0]}:{address[1]}" if address else "unknown address",
        repr(client) if client is not None else "unknown",
        reason,
    )
