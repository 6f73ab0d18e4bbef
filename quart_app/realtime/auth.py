"""JWT access tokens (DESIGN §5): HS256 pinned, ``exp`` required, ``type`` must be ``access``.

A token may arrive in the ``token`` query parameter (browsers cannot set headers on WebSocket or
EventSource), the ``access_token`` cookie, or ``Authorization: Bearer``. Because the query string
reaches proxy and access logs, no function here ever logs a token or echoes it in an error.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

import jwt

from ..errors import Unauthorized

ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    user_id: int
    expires_at: float
    address: str | None = None
    name: str | None = None
    projects: frozenset[str] = frozenset()


def mint_token(
    secret: str,
    user_id: int,
    *,
    ttl_seconds: float = 3600,
    projects: list[str] | tuple[str, ...] = (),
    name: str | None = None,
    address: str | None = None,
    now: float | None = None,
) -> str:
    """Return a signed access token for ``user_id`` valid for ``ttl_seconds``."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "type": "access",
        "iat": issued,
        "exp": issued + int(ttl_seconds),
    }
    if projects:
        claims["projects"] = list(projects)
    if name:
        claims["name"] = name
    if address:
        claims["address"] = address
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str | None) -> Principal:
    """Decode ``token`` or raise :class:`Unauthorized` with a reason that never quotes it."""
    if not token:
        raise Unauthorized("Missing access token")
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("Token expired") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"Token is missing the {exc.claim!r} claim") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("Invalid token") from None
    if claims.get("type") != "access":
        raise Unauthorized("Wrong token type: an access token is required")
    try:
        user_id = int(claims["sub"])
    except (TypeError, ValueError):
        raise Unauthorized("Token subject is not a user id") from None
    projects = claims.get("projects") or []
    if not isinstance(projects, list):
        raise Unauthorized("Token 'projects' claim must be a list")
    return Principal(
        user_id=user_id,
        expires_at=float(claims["exp"]),
        address=claims.get("address"),
        name=claims.get("name"),
        projects=frozenset(str(p) for p in projects),
    )


def token_from_request(
    args: Mapping[str, str], cookies: Mapping[str, str], headers: Mapping[str, str]
) -> str | None:
    """Pick the token from the query, the cookie or a bearer header, in that order."""
    token = args.get("token")
    if token:
        return token
    token = cookies.get("access_token")
    if token:
        return token
    authorization = headers.get("Authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None
