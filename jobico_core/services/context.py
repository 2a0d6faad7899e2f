"""Everything a service needs, built once per process from ``Settings``."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

from celery import Celery

from ..broker import make_celery, redis_client
from ..cache import LRU, TTLCache
from ..db import Database
from ..locks import Locks
from ..settings import Settings
from ..storage import ObjectStore, open_store


log = logging.getLogger(__name__)
ROUTING_GENERATION = "jobico:routing:generation"  # bumped by every change the webhook cache depends on


@dataclass
class Context:
    settings: Settings
    _celery: Celery | None = field(default=None, repr=False)
    _routing_generation: bytes | None = field(default=None, repr=False)

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.database_url)

    @cached_property
    def store(self) -> ObjectStore:
        return open_store(self.settings)

    @property
    def celery(self) -> Celery:
        if self._celery is None:
            self._celery = make_celery(self.settings)
        return self._celery

    # In-process caches live on the Context, not in module globals: a cache keyed
    # by database ids is only valid for the database it was filled from.
    @cached_property
    def versions(self) -> LRU:
        """PackageVersion.id -> VersionInfo (versions are immutable)."""
        return LRU(4096)

    @cached_property
    def validators(self) -> LRU:
        """(tenant, schema sha256) -> compiled JSON Schema validator."""
        return LRU(4096)

    @cached_property
    def webhook_cache(self) -> TTLCache:
        """The webhook's tenant, key and route lookups, for JOBICO_WEBHOOK_CACHE_SECONDS."""
        return TTLCache(self.settings.webhook_cache_seconds)

    def changed_routing(self) -> None:
        """A tenant, key, webhook mode or package changed: every API process's webhook sees it
        at its next request (this one's cache is emptied, the others' through a Redis counter)."""
        self.webhook_cache.clear()
        try:
            self.redis.incr(ROUTING_GENERATION)
        except Exception as exc:  # Redis away: the other processes' entries still expire with their TTL
            log.warning("could not announce a routing change (other API processes see it within "
                        "JOBICO_WEBHOOK_CACHE_SECONDS): %s", exc)

    def fresh_webhook_cache(self) -> TTLCache:
        """``webhook_cache``, emptied first when any process changed routing since it was filled
        (one Redis GET; if Redis cannot answer, the entries still expire with their TTL)."""
        cache = self.webhook_cache
        if cache.ttl > 0:
            try:
                generation = self.redis.get(ROUTING_GENERATION)
            except Exception:
                return cache
            if generation != self._routing_generation:
                cache.clear()
                self._routing_generation = generation
        return cache

    @property
    def redis(self):
        return redis_client(self.settings.redis_url)

    @cached_property
    def locks(self) -> Locks:
        """The named locks' leases (an event's ``locks:``)."""
        return Locks(self.redis, self.settings.lock_lease_s, poll_s=self.settings.lock_poll_s)
