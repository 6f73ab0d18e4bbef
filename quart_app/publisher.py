"""Publish from your backend (docs/protocol.md, "Publishing from your backend").

* :class:`Publisher` (sync, ``httpx.Client``) and :class:`AsyncPublisher` (``httpx.AsyncClient``)
  call ``POST /api/publish``. Every call carries an ``Idempotency-Key`` (a fresh uuid4 unless
  you give one), so a retry can never publish twice: connection errors, timeouts, 429 and 5xx
  are retried ``retries`` times with exponential backoff and full jitter (or the server's
  ``Retry-After``, if longer). A 4xx (or the last failed attempt) raises :class:`PublishError`.
* :class:`RedisPublisher` (async) skips the HTTP hop for backends that already hold Redis: it
  validates and publishes exactly as the server does (:mod:`quart_app.publish_api`), through
  the broker's atomic offset + history + PUBLISH script, so subscribers of any server on the
  same Redis and prefix receive the publications with offsets and history.

Every method answers what ``/api/publish`` answers (the JSON, as a dict).
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from typing import Any, Iterable

import httpx

from .errors import Unprocessable
from .publish_api import publish_body
from .realtime import namespaces
from .realtime.broker import Publication
from .realtime.redis_urls import redis_broker
from .realtime.engine import publish_many, publish_request
from .web import KEY_CHARS, KEY_MAX

DEFAULT_URL = "http://127.0.0.1:8000"
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 5.0


class PublishError(Exception):
    """A refused publish (4xx), or one still failing after the retries. ``status`` is the HTTP
    status (None when the server was never reached); ``answer`` the JSON body, if any (a batch
    refused as a whole carries its per-item ``results`` there)."""

    def __init__(self, status: int | None, detail: str, answer: Any = None) -> None:
        super().__init__(f"{status or 'no answer'}: {detail}")
        self.status = status
        self.detail = detail
        self.answer = answer


def one(channel: str, data: dict) -> dict:
    """A batch item (or body) publishing ``data`` on ``channel``."""
    return {"channel": channel, "data": data}


def many(channels: Iterable[str], data: dict) -> dict:
    """A batch item (or body) publishing ``data`` on each of ``channels``."""
    return {"channels": list(channels), "data": data}


def _refusal(status: int, answer: Any) -> PublishError:
    if isinstance(answer, dict) and isinstance(answer.get("detail"), str):
        return PublishError(status, answer["detail"], answer)
    if isinstance(answer, dict) and "results" in answer:
        return PublishError(status, "No item of the batch was published", answer)
    return PublishError(status, f"HTTP {status}", answer)


class _HttpPublisher:
    """The request and the verdict on each answer; the subclasses do the I/O."""

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str = "", timeout: float = 5,
                 retries: int = 3) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries

    def _request(self, body: Any, idempotency_key: str | None) -> dict:
        return {"url": "/api/publish", "content": json.dumps(body).encode(),
                "headers": {"X-API-Key": self.api_key, "Content-Type": "application/json",
                            "Idempotency-Key": idempotency_key or uuid.uuid4().hex}}

    def _verdict(self, attempt: int, response: httpx.Response | None,
                 error: Exception | None) -> tuple[dict | None, float]:
        """``(answer, 0)`` when done, ``(None, delay)`` to retry; raises when it is over."""
        if response is not None:
            status = response.status_code
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if status < 300:
                return (answer if answer is not None else {}), 0.0
            if status != 429 and status < 500:
                raise _refusal(status, answer)
            if attempt >= self.retries:
                raise _refusal(status, answer)
        elif attempt >= self.retries:
            raise PublishError(None, f"Pulse unreachable: {type(error).__name__}: {error}") \
                from error
        delay = random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** attempt))
        retry_after = response.headers.get("Retry-After", "") if response is not None else ""
        if retry_after.isdigit():
            delay = max(delay, min(float(retry_after), BACKOFF_CAP_SECONDS))
        return None, delay


class Publisher(_HttpPublisher):
    """``POST /api/publish`` from synchronous code. Use as a context manager, or ``close()``."""

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str = "", timeout: float = 5,
                 retries: int = 3) -> None:
        super().__init__(base_url, api_key, timeout, retries)
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout)

    def publish(self, channel: str, data: dict, idempotency_key: str | None = None) -> dict:
        return self._post(one(channel, data), idempotency_key)

    def broadcast(self, channels: Iterable[str], data: dict,
                  idempotency_key: str | None = None) -> dict:
        return self._post(many(channels, data), idempotency_key)

    def batch(self, items: Iterable[dict], idempotency_key: str | None = None) -> dict:
        """Items made with :func:`one` / :func:`many`; answers ``{"results": [...]}`` (a 207
        is an answer: look at each result's ``status``)."""
        return self._post(list(items), idempotency_key)

    def _post(self, body: Any, idempotency_key: str | None) -> dict:
        request = self._request(body, idempotency_key)  # one key for every attempt
        attempt = 0
        while True:
            response = error = None
            try:
                response = self._client.post(**request)
            except httpx.TransportError as exc:  # connect errors and timeouts included
                error = exc
            answer, delay = self._verdict(attempt, response, error)
            if answer is not None:
                return answer
            time.sleep(delay)
            attempt += 1

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class AsyncPublisher(_HttpPublisher):
    """``POST /api/publish`` from asyncio code. ``async with``, or ``await aclose()``."""

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str = "", timeout: float = 5,
                 retries: int = 3) -> None:
        super().__init__(base_url, api_key, timeout, retries)
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def publish(self, channel: str, data: dict,
                      idempotency_key: str | None = None) -> dict:
        return await self._post(one(channel, data), idempotency_key)

    async def broadcast(self, channels: Iterable[str], data: dict,
                        idempotency_key: str | None = None) -> dict:
        return await self._post(many(channels, data), idempotency_key)

    async def batch(self, items: Iterable[dict], idempotency_key: str | None = None) -> dict:
        return await self._post(list(items), idempotency_key)

    async def _post(self, body: Any, idempotency_key: str | None) -> dict:
        request = self._request(body, idempotency_key)
        attempt = 0
        while True:
            response = error = None
            try:
                response = await self._client.post(**request)
            except httpx.TransportError as exc:
                error = exc
            answer, delay = self._verdict(attempt, response, error)
            if answer is not None:
                return answer
            await asyncio.sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> "AsyncPublisher":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()


class RedisPublisher:
    """Publish straight into Redis, as a Pulse server on ``prefix`` would (async).

    ``history_size`` / ``history_ttl_seconds`` must match the servers' ``PULSE_HISTORY_SIZE`` /
    ``PULSE_HISTORY_TTL_SECONDS``, and ``namespaces_file`` their ``PULSE_NAMESPACES`` (read
    from the environment when not given): they decide which channels exist, which are
    user-targeted and how much history each keeps. A refused body raises
    :class:`PublishError` (422), as the HTTP API would answer; Redis errors propagate.
    """

    def __init__(self, redis_url: str, prefix: str = "pulse:", history_size: int = 1000,
                 history_ttl_seconds: float = 600.0, namespaces_file: str | None = None) -> None:
        self.broker = redis_broker(redis_url, prefix, history_size, history_ttl_seconds)
        self._connected = False
        namespaces_file = namespaces_file or os.environ.get("PULSE_NAMESPACES") or None
        if namespaces_file or not namespaces.current().namespaces:
            # This process is a backend, not a server: give it the servers' channel table (the
            # built-in app's, plus the file's), raising NamespaceError for a bad file.
            from .dashboard import channels

            builtin = namespaces.Registry(channels.NAMESPACES)
            namespaces.install(namespaces.load_file(namespaces_file, builtin)
                               if namespaces_file else builtin)

    async def connect(self) -> None:
        if not self._connected:
            await self.broker.connect()
            self._connected = True

    async def close(self) -> None:
        if self._connected:
            self._connected = False
            await self.broker.close()

    async def __aenter__(self) -> "RedisPublisher":
        await self.connect()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def publish(self, channel: str, data: dict,
                      idempotency_key: str | None = None) -> dict:
        return await self._run(one(channel, data), idempotency_key)

    async def broadcast(self, channels: Iterable[str], data: dict,
                        idempotency_key: str | None = None) -> dict:
        return await self._run(many(channels, data), idempotency_key)

    async def batch(self, items: Iterable[dict], idempotency_key: str | None = None) -> dict:
        return await self._run(list(items), idempotency_key)

    async def _run(self, body: Any, key: str | None) -> dict:
        if key is not None and not (0 < len(key) <= KEY_MAX and set(key) <= KEY_CHARS):
            raise PublishError(422, f"An idempotency key is 1 to {KEY_MAX} visible ASCII "
                                    "characters (no spaces)")
        await self.connect()
        try:
            answer, status, _replayed = await publish_body(self._publish, body, key,
                                                           self._publish_many)
        except Unprocessable as exc:
            raise PublishError(422, exc.detail) from None
        if status >= 300:
            raise _refusal(status, answer)
        return answer

    async def _publish(self, channel: str, data: dict, *, publication_id: str | None = None,
                       body_hash: str = "") -> Publication:
        """What ``Engine.publish`` does: a user's own offset space on a user-targeted channel,
        the namespace's history, and an id on every publish (a retry cannot publish twice)."""
        return await self.broker.publish(**publish_request(channel, data, publication_id,
                                                           body_hash, None))

    async def _publish_many(self, requests: list) -> list[Publication]:
        return await publish_many(self.broker, requests)