"""The service container: the realtime engine plus the built-in app's database and cache.

Every blueprint reaches them through ``services()`` (:mod:`quart_app.web`); nothing else holds
module-level state.
"""
from __future__ import annotations

import logging

from .config import Settings
from .dashboard.cache import Cache, MemoryCache, RedisCache
from .dashboard.db import Database, migrate
from .realtime.engine import Engine

log = logging.getLogger("pulse")


class Services(Engine):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.db = Database(settings.database_url)
        self.cache: Cache = MemoryCache()
        self.readiness = {"database": self.db.ping, **self.readiness}

    async def start(self) -> None:
        await self.db.connect()
        applied = await migrate(self.db)
        if applied:
            log.info("migrations applied: %s", ", ".join(applied))
        await super().start()

    async def broker_connected(self) -> None:
        if self.using_redis:
            self.cache = RedisCache(self.broker.redis, self.settings.redis_prefix + "cache:")

    async def stop(self) -> None:
        await super().stop()
        await self.db.close()
