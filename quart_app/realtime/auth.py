"""JWT access tokens (docs/configuration.md, "Auth"): ``exp`` and ``sub`` required, ``type`` must
be ``access``; HS256 with ``JWT_SECRET``, and RS256/ES256 with keys from ``PULSE_JWKS_URL``.

A token may arrive in the ``token`` query parameter (browsers cannot set headers on WebSocket or
EventSource), the ``access_token`` cookie, or ``Authorization: Bearer``. Because the query string
reaches proxy and access logs, no function here ever logs a token or echoes it in an error.
"""
from __future__ import annotations

import asyncio
import binascii
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import jwt
from jwt.algorithms import HMACAlgorithm
from jwt.utils import base64url_decode, base64url_encode

from ..errors import Unauthorized

ALGORITHM = "HS256"
log = logging.getLogger("pulse.auth")


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    user_id: int
    expires_at: float
    address: str | None = None
    name: str | None = None
    projects: frozenset[str] = frozenset()
    # The token's other claims (beyond the fields above), for namespace rules: member, token.
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def mint_token(
    secret: str,
    user_id: int,
    *,
    ttl_seconds: float = 3600,
    projects: list[str] | tuple[str, ...] = (),
    name: str | None = None,
    address: str | None = None,
    now: float | None = None,
    **extra: Any,
) -> str:
    """Return a signed access token for ``user_id`` valid for ``ttl_seconds``; ``extra`` claims
    (``channels=["room:*"]`` for the token rule, docs/namespaces.md) are added as they are."""
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
    claims.update(extra)
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str | None) -> Principal:
    """Decode an HS256 ``token`` or raise :class:`Unauthorized` (never quoting the token)."""
    if not token:
        raise Unauthorized("Missing access token")
    return _principal(_decode(token, secret, [ALGORITHM], None, None))


def _decode(token: str, key: Any, algorithms: list[str] | tuple[str, ...],
            audience: str | None, issuer: str | None) -> dict:
    try:
        return _JWT.decode(
            token, key, algorithms=list(algorithms), audience=audience, issuer=issuer,
            options={"require": ["exp", "sub"], "verify_aud": audience is not None})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("Token expired") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"Token is missing the {exc.claim!r} claim") from None
    except jwt.InvalidAudienceError:
        raise Unauthorized("Token is for another audience") from None
    except jwt.InvalidIssuerError:
        raise Unauthorized("Token is from another issuer") from None
    except jwt.InvalidAlgorithmError:
        raise Unauthorized("Invalid token: its algorithm is not accepted here") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("Invalid token") from None


class _CheckedKeyHMAC(HMACAlgorithm):
    """PyJWT's HMAC, with each secret's checks (not a PEM, SSH, DER or JWK key: the
    algorithm-confusion guard) run once per secret instead of once per token: a connect storm
    of 10,000 tokens checked the same ``JWT_SECRET`` 10,000 times, 8 µs each."""

    def __init__(self, hash_alg: Any) -> None:
        super().__init__(hash_alg)
        self._checked: dict[Any, bytes] = {}

    def prepare_key(self, key: str | bytes) -> bytes:
        prepared = self._checked.get(key)
        if prepared is None:
            prepared = super().prepare_key(key)  # raises for a key that is no HMAC secret
            if len(self._checked) < 8:  # the process's own secrets only: a handful
                self._checked[key] = prepared
        return prepared


_BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _base64url_segment(segment: bytes, name: str) -> bytes:
    """PyJWS's check and decoding of one token segment, rule for rule, with its alphabet test
    done by ``bytes.translate`` (C) instead of a generator over every byte: a new token's check
    went from 25 to 16 µs (docs/scaling.md, "Reconnect storms"). At most two ``=``, and then only on a segment whose length is a
    multiple of 4; nothing outside the base64url alphabet; a length that is not 1 mod 4; and a
    canonical encoding (re-encoding gives the segment back). tests/test_auth.py holds it to
    PyJWT's own function on generated segments."""
    stripped = segment.rstrip(b"=")
    padding = len(segment) - len(stripped)
    if padding > 2 or (padding and len(segment) % 4) or len(stripped) % 4 == 1 \
            or stripped.translate(None, _BASE64URL):
        raise jwt.DecodeError(f"Invalid {name} padding")
    try:
        decoded = base64url_decode(stripped)
    except (TypeError, binascii.Error) as err:
        raise jwt.DecodeError(f"Invalid {name} padding") from err
    if base64url_encode(decoded) != stripped:
        raise jwt.DecodeError(f"Invalid {name} padding")
    return decoded


def _pyjwt() -> jwt.PyJWT:
    """A PyJWT of our own whose HS256/384/512 check their secret once (see _CheckedKeyHMAC)
    and whose segments are checked by :func:`_base64url_segment`; a PyJWT without the expected
    registry or segment check is used as it is."""
    instance = jwt.PyJWT()
    jws = getattr(instance, "_jws", None)
    if jws is not None and hasattr(jws, "unregister_algorithm"):
        for name, hash_alg in (("HS256", HMACAlgorithm.SHA256), ("HS384", HMACAlgorithm.SHA384),
                               ("HS512", HMACAlgorithm.SHA512)):
            jws.unregister_algorithm(name)
            jws.register_algorithm(name, _CheckedKeyHMAC(hash_alg))
    if jws is not None and callable(getattr(type(jws), "_decode_base64url_segment", None)):
        jws._decode_base64url_segment = _base64url_segment  # the instance's, not the class's
    return instance


_JWT = _pyjwt()


def _principal(claims: dict) -> Principal:
    if claims.get("type") != "access":
        raise Unauthorized("Wrong token type: an access token is required")
    sub = claims["sub"]
    if isinstance(sub, bool) or not isinstance(sub, (str, int)) \
            or not str(sub).isascii() or not str(sub).isdigit() or len(str(sub)) > 19:
        raise Unauthorized("Token subject is not a user id")
    projects = claims.get("projects") or []
    if not isinstance(projects, list):
        raise Unauthorized("Token 'projects' claim must be a list")
    return Principal(
        user_id=int(sub),
        expires_at=float(claims["exp"]),
        address=claims.get("address") if isinstance(claims.get("address"), str) else None,
        name=claims.get("name") if isinstance(claims.get("name"), str) else None,
        projects=frozenset(str(p) for p in projects) if projects else _NO_PROJECTS,
        claims=_extra(claims),
    )


_STANDARD = frozenset({"sub", "type", "exp", "iat", "nbf", "aud", "iss", "jti", "name",
                       "address", "projects"})
_NO_CLAIMS: Mapping[str, Any] = {}
_NO_PROJECTS: frozenset[str] = frozenset()


def _extra(claims: dict) -> Mapping[str, Any]:
    """The claims beyond those a Principal holds as fields (usually none: one shared empty
    mapping, so a connection's principal costs no dict of its own)."""
    extra = {k: v for k, v in claims.items() if k not in _STANDARD}
    return extra or _NO_CLAIMS


class TokenVerifier:
    """Verifies access tokens for the whole process, and remembers the ones it verified.

    * HS256 (or what ``PULSE_JWT_ALGORITHMS`` lists) with ``JWT_SECRET``; RS256/ES256 with the
      keys of ``PULSE_JWKS_URL``, fetched at start, refreshed every
      :data:`JWKS_REFRESH_SECONDS` and, at most every :data:`JWKS_MIN_REFETCH_SECONDS`, when a
      token names a key id not seen yet (a rotation): that token is refused with 4001/401 and
      the client's retry finds the new key.
    * ``PULSE_JWT_AUDIENCE`` / ``PULSE_JWT_ISSUER`` are checked when set.
    * A verified token is cached (by the whole token, never by its signature alone) until it
      expires, so a reconnect storm of the same tokens costs one verification each.
    """

    CACHE_MAX = 50_000
    JWKS_REFRESH_SECONDS = 300.0
    JWKS_MIN_REFETCH_SECONDS = 30.0

    def __init__(self, secret: str, config: Any = None) -> None:
        self.secret = secret
        self.algorithms = tuple(getattr(config, "algorithms", (ALGORITHM,)))
        self.audience = getattr(config, "audience", None)
        self.issuer = getattr(config, "issuer", None)
        self.jwks_url = getattr(config, "jwks_url", None)
        self._keys: dict[str, Any] = {}     # kid -> PyJWK
        self._fetched = 0.0
        self._refetch: asyncio.Task | None = None
        self._cache: dict[str, Principal] = {}
        self.hits = 0
        self._hmac_only = all(name.startswith("HS") for name in self.algorithms)

    def verify(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized("Missing access token")
        cache = self._cache
        principal = cache.get(token)
        if principal is not None:
            if principal.expires_at > time.time():
                self.hits += 1
                return principal
            del cache[token]
            raise Unauthorized("Token expired")
        if self.jwks_url is None and self._hmac_only:
            # One secret for every accepted algorithm: PyJWT checks the header's algorithm
            # against the list itself, so the header is not decoded twice.
            key: Any = self.secret
            accepted: tuple[str, ...] = self.algorithms
        else:
            key, accepted = self._key_for(token)
        principal = _principal(_decode(token, key, accepted, self.audience, self.issuer))
        if len(cache) >= self.CACHE_MAX:
            for stale in list(cache)[: self.CACHE_MAX // 10]:  # the oldest tenth
                del cache[stale]
        cache[token] = principal
        return principal

    def _key_for(self, token: str) -> tuple[Any, tuple[str, ...]]:
        """The key and the one algorithm a token's header names (JWKS: by its ``kid``)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthorized("Invalid token") from None
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise Unauthorized("Invalid token: its algorithm is not accepted here")
        if algorithm.startswith("HS"):
            return self.secret, (algorithm,)
        jwk = self._keys.get(str(header.get("kid")))
        if jwk is None:
            self._schedule_refetch()
            raise Unauthorized("Invalid token: unknown signing key (retry shortly)")
        return jwk.key, (algorithm,)

    # -- JWKS --------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Fetch the key set; keep the old keys if the fetch fails."""
        import httpx

        self._fetched = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                response = await client.get(self.jwks_url)
                response.raise_for_status()
                keys = jwt.PyJWKSet.from_dict(response.json()).keys
        except Exception as exc:  # network, JSON, or an unusable key set: keep what we have
            log.warning("JWKS fetch from %s failed: %s", self.jwks_url, type(exc).__name__)
            return
        self._keys = {str(k.key_id): k for k in keys}
        log.info("JWKS: %d signing keys from %s", len(self._keys), self.jwks_url)

    async def refresh_forever(self, _engine: Any = None) -> None:
        while True:
            await asyncio.sleep(self.JWKS_REFRESH_SECONDS)
            await self.refresh()

    def _schedule_refetch(self) -> None:
        if not self.jwks_url or (self._refetch is not None and not self._refetch.done()):
            return
        if time.monotonic() - self._fetched < self.JWKS_MIN_REFETCH_SECONDS:
            return
        try:
            self._refetch = asyncio.get_running_loop().create_task(self.refresh())
        except RuntimeError:  # no loop (a sync caller): the periodic refresh will do
            pass


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
