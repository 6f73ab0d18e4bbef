"""Settings from the environment, read once at start into one typed object.

Every component gets only its slice (``settings.limits``, ``settings.history`` …). A bad value
fails at start with :class:`ConfigError` naming the variable, never later on a hot path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping
from urllib.parse import urlsplit

from .errors import ConfigError

DEV_JWT_SECRET = "pulse-development-secret-do-not-use-in-production"
DEV_API_KEY = "dev-api-key"
DEFAULT_DATABASE_URL = "sqlite:///pulse.db"


class AppEnv(str, Enum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection limits (DESIGN §10)."""

    max_frame_bytes: int = 4096
    max_subscriptions: int = 100
    max_messages_per_second: float = 20.0
    max_connections_per_user: int = 20
    outbox_messages: int = 1000
    outbox_high_water_bytes: int = 1024 * 1024
    auth_timeout_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class Liveness:
    ping_interval_seconds: float = 25.0
    idle_timeout_seconds: float = 60.0
    sse_heartbeat_seconds: float = 15.0
    sse_retry_ms: int = 2000
    shutdown_grace_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    size: int = 1000
    ttl_seconds: float = 600.0


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """What faces the internet before a request reaches the app (docs/configuration.md)."""

    allowed_origins: tuple[str, ...] = ()   # besides the service's own; "*" or https://*.x.com
    head_timeout_seconds: float = 10.0      # a new connection's first request head
    max_connections: int = 0                # open client sockets per process; 0 = from ulimit
    trust_proxy: bool = False               # X-Forwarded-Proto/-Host from a TLS proxy


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Token verification: HS256 with JWT_SECRET, and/or keys from a JWKS URL."""

    jwks_url: str | None = None
    algorithms: tuple[str, ...] = ("HS256",)
    audience: str | None = None
    issuer: str | None = None


MIN_SECRET_LENGTH = 32


@dataclass(frozen=True, slots=True)
class Settings:
    app_env: AppEnv = AppEnv.DEVELOPMENT
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    jwt_secret: str = DEV_JWT_SECRET
    api_key: str | None = DEV_API_KEY
    port: int = 8000
    ws_deflate: bool = False
    redis_prefix: str = "pulse:"
    stats_cache_seconds: float = 10.0
    feed_keep: int = 10_000
    log_level: str = "INFO"
    backlog: int = 4096
    metrics_dir: str | None = None
    limits: Limits = field(default_factory=Limits)
    liveness: Liveness = field(default_factory=Liveness)
    history: HistoryConfig = field(default_factory=HistoryConfig)
    edge: EdgeConfig = field(default_factory=EdgeConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    namespaces_file: str | None = None    # PULSE_NAMESPACES: a TOML file (docs/namespaces.md)
    subscribe_proxy_url: str | None = None  # PULSE_SUBSCRIBE_PROXY_URL (namespaces: "proxy")
    subscribe_proxy_timeout_seconds: float = 2.0    # PULSE_SUBSCRIBE_PROXY_TIMEOUT_SECONDS
    subscribe_proxy_cache_seconds: float = 30.0     # PULSE_SUBSCRIBE_PROXY_CACHE_SECONDS
    heartbeat_ttl_seconds: float = 15.0   # PULSE_HEARTBEAT_TTL_SECONDS: presence, cluster stats

    @property
    def production(self) -> bool:
        return self.app_env is AppEnv.PRODUCTION

    @property
    def database_dialect(self) -> str:
        return "sqlite" if self.database_url.startswith("sqlite") else "postgresql"


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum or value != value:
        raise ConfigError(f"{name} must be >= {minimum}, got {raw!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _database_url(env: Mapping[str, str]) -> str:
    raw = env.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    scheme = urlsplit(raw).scheme
    if scheme in {"postgres", "postgresql", "postgresql+asyncpg"}:
        parts = urlsplit(raw)
        if not parts.hostname and "host=" not in parts.query:
            raise ConfigError(f"DATABASE_URL has no host: {raw!r}")
        if not parts.path.strip("/"):
            raise ConfigError(f"DATABASE_URL names no database: {raw!r}")
        # `databases` picks asyncpg for a plain postgresql:// URL.
        return "postgresql://" + raw.split("://", 1)[1]
    if scheme in {"sqlite", "sqlite+aiosqlite"}:
        rest = raw.split("://", 1)[1]
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(f"DATABASE_URL for SQLite must look like sqlite:///path.db, got {raw!r}")
        return "sqlite://" + rest
    raise ConfigError(
        f"DATABASE_URL must be a postgresql:// or sqlite:/// URL, got {raw!r}"
    )


def _redis_url(env: Mapping[str, str]) -> str | None:
    raw = env.get("REDIS_URL")
    if not raw:
        return None
    from .realtime import redis_urls

    if redis_urls.kind_of(raw) != "single":  # a Redis Cluster, or Sentinel (redis_urls.py)
        try:
            topology = redis_urls.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"REDIS_URL: {exc}") from None
        if topology.kind == "cluster" and set("{}") & set(env.get("PULSE_REDIS_PREFIX") or ""):
            raise ConfigError("PULSE_REDIS_PREFIX cannot contain '{' or '}' on a Redis Cluster")
        return raw
    parts = urlsplit(raw)
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError(f"REDIS_URL must be a redis://, rediss://, unix://, redis+cluster:// "
                          f"or redis+sentinel:// URL, got {raw!r}")
    if parts.scheme != "unix":
        if not parts.hostname:
            raise ConfigError(f"REDIS_URL has no host: {raw!r}")
        try:
            parts.port
        except ValueError:
            raise ConfigError(f"REDIS_URL has a bad port: {raw!r}") from None
    return raw


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(env: Mapping[str, str]) -> str:
    raw = (env.get("PULSE_LOG_LEVEL") or "INFO").strip().upper()
    if raw == "WARN":
        raw = "WARNING"
    if raw not in LOG_LEVELS:
        raise ConfigError(f"PULSE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, "
                          f"got {env.get('PULSE_LOG_LEVEL')!r}")
    return raw


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default ``os.environ``); raise ConfigError if bad."""
    env = os.environ if env is None else env
    raw_env = (env.get("APP_ENV") or "development").strip().lower()
    try:
        app_env = AppEnv(raw_env)
    except ValueError:
        raise ConfigError(f"APP_ENV must be development or production, got {raw_env!r}") from None

    secret = env.get("JWT_SECRET") or ""
    if app_env is AppEnv.PRODUCTION and not secret:
        raise ConfigError(
            "JWT_SECRET is not set: a production start (APP_ENV=production) refuses to run "
            "without it. Set JWT_SECRET to a long random string shared by every instance."
        )

    if app_env is AppEnv.PRODUCTION and (secret == DEV_JWT_SECRET
                                         or len(secret) < MIN_SECRET_LENGTH):
        raise ConfigError(
            f"JWT_SECRET is too weak for production: use at least {MIN_SECRET_LENGTH} random "
            "characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`), "
            "never the development default")

    api_key = env.get("PULSE_API_KEY") or (None if app_env is AppEnv.PRODUCTION else DEV_API_KEY)

    limits = Limits(
        max_frame_bytes=_int(env, "PULSE_MAX_FRAME_BYTES", 4096, 64),
        max_subscriptions=_int(env, "PULSE_MAX_SUBSCRIPTIONS", 100, 1),
        max_messages_per_second=_float(env, "PULSE_MAX_MESSAGES_PER_SECOND", 20.0, 0.1),
        max_connections_per_user=_int(env, "PULSE_MAX_CONNECTIONS_PER_USER", 20, 1),
        outbox_messages=_int(env, "PULSE_OUTBOX_MESSAGES", 1000, 1),
        outbox_high_water_bytes=_int(env, "PULSE_OUTBOX_HIGH_WATER_BYTES", 1024 * 1024, 1024),
        auth_timeout_seconds=_float(env, "PULSE_AUTH_TIMEOUT_SECONDS", 5.0, 0.1),
    )
    liveness = Liveness(
        ping_interval_seconds=_float(env, "PULSE_PING_INTERVAL_SECONDS", 25.0, 0.05),
        idle_timeout_seconds=_float(env, "PULSE_IDLE_TIMEOUT_SECONDS", 60.0, 0.1),
        sse_heartbeat_seconds=_float(env, "PULSE_SSE_HEARTBEAT_SECONDS", 15.0, 0.05),
        sse_retry_ms=_int(env, "PULSE_SSE_RETRY_MS", 2000, 0),
        shutdown_grace_seconds=_float(env, "PULSE_SHUTDOWN_GRACE_SECONDS", 5.0, 0.0),
    )
    history = HistoryConfig(
        size=_int(env, "PULSE_HISTORY_SIZE", 1000, 1),
        ttl_seconds=_float(env, "PULSE_HISTORY_TTL_SECONDS", 600.0, 1.0),
    )
    return Settings(
        app_env=app_env,
        database_url=_database_url(env),
        redis_url=_redis_url(env),
        jwt_secret=secret or DEV_JWT_SECRET,
        api_key=api_key,
        port=_int(env, "PORT", 8000, 0),
        ws_deflate=_bool(env, "PULSE_WS_DEFLATE", False),
        redis_prefix=env.get("PULSE_REDIS_PREFIX") or "pulse:",
        stats_cache_seconds=_float(env, "PULSE_STATS_CACHE_SECONDS", 10.0, 0.0),
        feed_keep=_int(env, "PULSE_FEED_KEEP", 10_000, 1),
        log_level=_log_level(env),
        backlog=_int(env, "PULSE_BACKLOG", 4096, 1),
        metrics_dir=env.get("PULSE_METRICS_DIR") or None,
        limits=limits,
        liveness=liveness,
        history=history,
        edge=EdgeConfig(
            allowed_origins=_origins(env),
            head_timeout_seconds=_float(env, "PULSE_HEAD_TIMEOUT_SECONDS", 10.0, 0.1),
            max_connections=_int(env, "PULSE_MAX_CONNECTIONS", 0, 0),
            trust_proxy=_bool(env, "PULSE_TRUST_PROXY", False),
        ),
        auth=_auth(env),
        namespaces_file=_namespaces_file(env),
        subscribe_proxy_url=_proxy_url(env),
        subscribe_proxy_timeout_seconds=_float(env, "PULSE_SUBSCRIBE_PROXY_TIMEOUT_SECONDS",
                                               2.0, 0.05),
        subscribe_proxy_cache_seconds=_float(env, "PULSE_SUBSCRIBE_PROXY_CACHE_SECONDS", 30.0),
        heartbeat_ttl_seconds=_float(env, "PULSE_HEARTBEAT_TTL_SECONDS", 15.0, 0.5),
    )


def _proxy_url(env: Mapping[str, str]) -> str | None:
    url = (env.get("PULSE_SUBSCRIBE_PROXY_URL") or "").strip() or None
    if url is not None and urlsplit(url).scheme not in {"http", "https"}:
        raise ConfigError(f"PULSE_SUBSCRIBE_PROXY_URL must be an http(s) URL, got {url!r}")
    return url


def _namespaces_file(env: Mapping[str, str]) -> str | None:
    """``PULSE_NAMESPACES``: read and validated now, so a bad file stops the start."""
    path = (env.get("PULSE_NAMESPACES") or "").strip() or None
    if path is not None:
        from .realtime.namespaces import NamespaceError, load_file

        try:
            load_file(path)
        except NamespaceError as exc:
            raise ConfigError(f"PULSE_NAMESPACES: {exc}") from None
    return path


def _origins(env: Mapping[str, str]) -> tuple[str, ...]:
    """``PULSE_ALLOWED_ORIGINS``: comma-separated ``scheme://host[:port]``, a ``*.`` wildcard
    for subdomains, or ``*`` for any origin."""
    origins = []
    for raw in (env.get("PULSE_ALLOWED_ORIGINS") or "").split(","):
        origin = raw.strip().rstrip("/").lower()
        if not origin:
            continue
        if origin != "*":
            parts = urlsplit(origin)
            if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path \
                    or parts.query or "*" in parts.netloc.replace("*.", "", 1):
                raise ConfigError(
                    f"PULSE_ALLOWED_ORIGINS: {raw.strip()!r} is not an origin like "
                    "https://app.example.com or https://*.example.com")
        origins.append(origin)
    return tuple(origins)


def _auth(env: Mapping[str, str]) -> AuthConfig:
    jwks_url = (env.get("PULSE_JWKS_URL") or "").strip() or None
    if jwks_url and urlsplit(jwks_url).scheme not in {"http", "https"}:
        raise ConfigError(f"PULSE_JWKS_URL must be an http(s) URL, got {jwks_url!r}")
    default = "HS256,RS256,ES256" if jwks_url else "HS256"
    algorithms = tuple(a.strip() for a in (env.get("PULSE_JWT_ALGORITHMS") or default).split(",")
                       if a.strip())
    known = {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "PS256"}
    for algorithm in algorithms:
        if algorithm not in known:
            raise ConfigError(f"PULSE_JWT_ALGORITHMS: unknown algorithm {algorithm!r} "
                              f"(one of {', '.join(sorted(known))})")
    if not algorithms:
        raise ConfigError("PULSE_JWT_ALGORITHMS is empty")
    if any(not a.startswith("HS") for a in algorithms) and not jwks_url:
        raise ConfigError("PULSE_JWT_ALGORITHMS names public-key algorithms: set PULSE_JWKS_URL")
    return AuthConfig(jwks_url=jwks_url, algorithms=algorithms,
                      audience=(env.get("PULSE_JWT_AUDIENCE") or "").strip() or None,
                      issuer=(env.get("PULSE_JWT_ISSUER") or "").strip() or None)
