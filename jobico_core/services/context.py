"""Everything a service needs, built once per process from ``Settings``."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import cached_property

from celery import Celery

from ..broker import make_celery, redis_client
from ..cache import LRU, TTLCache
from ..db import Database
from ..groupcommit import GroupCommit
from ..locks import Locks
from ..settings import Settings
from ..storage import ObjectStore, open_store

log = logging.getLogger(__name__)
# bumped by every change of tenants, keys, webhook modes and packages: every process empties its
# webhook cache and its version cache when it moves (docs/architecture.md, "Identities and caches")
ROUTING_GENERATION = "jobico:routing:generation"
# how often at most a worker reads ROUTING_GENERATION for its version cache: a batch runs an event
# in ~1 ms, a Redis GET each would cost ~10 %; entries cannot be another version's (ids are never
# reused), so this only bounds how long a deleted package's queued execution may still run
VERSIONS_FOLLOW_S = 0.2


@dataclass
class Context:
    settings: Settings
    _celery: Celery | None = field(default=None, repr=False)
    _routing_generation: bytes | None = field(default=None, repr=False)
    _versions_followed_at: float = field(default=float("-inf"), repr=False)

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
        """PackageVersion.id -> VersionInfo: versions are immutable and their ids never reused
        (jobico_core.db.NEVER_REUSED); a hit is still checked against the tenant, package and
        version asked for (``packages.cached_version``), and the cache is emptied when
        ROUTING_GENERATION moves (``fresh_versions``)."""
        return LRU(4096)

    @cached_property
    def validators(self) -> LRU:
        """(tenant, schema sha256) -> compiled JSON Schema validator."""
        return LRU(4096)

    @cached_property
    def webhook_cache(self) -> TTLCache:
        """The webhook's tenant, key and route lookups, for JOBICO_WEBHOOK_CACHE_SECONDS."""
        return TTLCache(self.settings.webhook_cache_seconds)

    @cached_property
    def ingest_batches(self) -> GroupCommit:
        """The webhook's group commit (``services.ingest``): concurrent requests of this process
        for one tenant/version/event/queue share one INSERT and one batch task
        (JOBICO_INGEST_COALESCE, JOBICO_INGEST_LINGER_MS; at most JOBICO_TASK_BATCH events)."""
        return GroupCommit(self.settings.ingest_linger_ms / 1000, self.settings.task_batch)

    def changed_routing(self) -> None:
        """A tenant, key, webhook mode or package changed: every process's webhook and version
        caches are emptied before their next use (this one's now, the others' through a Redis
        counter)."""
        self.webhook_cache.clear()
        self.versions.clear()
        try:
            self.redis.incr(ROUTING_GENERATION)
        except Exception as exc:  # Redis away: the other processes' entries still expire with their TTL
            log.warning("could not announce a routing change (other API processes see it within "
                        "JOBICO_WEBHOOK_CACHE_SECONDS): %s", exc)

    def fresh_webhook_cache(self) -> TTLCache:
        """``webhook_cache``, emptied first when any process changed routing since it was filled
        (one Redis GET; if Redis cannot answer, the entries still expire with their TTL)."""
        if self.webhook_cache.ttl > 0:
            self._follow_routing_generation()
        return self.webhook_cache

    def recheck_routing(self) -> bool:
        """After the webhook answered from ``webhook_cache`` without reading ROUTING_GENERATION:
        empty it when the counter moved (one Redis GET); True when it did (the request is then
        checked again, against fresh lookups)."""
        return self.webhook_cache.ttl > 0 and self._follow_routing_generation()

    def fresh_versions(self) -> LRU:
        """``versions``, emptied first when any process changed routing (a package deleted, say)
        since it was filled: one Redis GET, at most every VERSIONS_FOLLOW_S. If Redis cannot
        answer, entries are served as they are (they cannot be another version's: ids are never
        reused; at worst a deleted package's queued execution still runs, as it would have a
        moment earlier)."""
        now = time.monotonic()
        if now - self._versions_followed_at >= VERSIONS_FOLLOW_S:
            self._versions_followed_at = now
            self._follow_routing_generation()
        return self.versions

    @property
    def routing_generation_seen(self) -> bytes | None:
        """The ROUTING_GENERATION value this process's caches were last checked against (no
        Redis call): the webhook has its admission script compare it with Redis's
        (``services.ingest``), which saves the ``GET`` of ``fresh_webhook_cache``."""
        return self._routing_generation

    def follow_routing_generation(self, generation: bytes | None) -> bool:
        """Empty the caches ROUTING_GENERATION guards when ``generation`` (its value, read from
        Redis) is not the one this process last saw; True when it moved."""
        if generation == self._routing_generation:
            return False
        self.webhook_cache.clear()
        self.versions.clear()
        self._routing_generation = generation
        return True

    def _follow_routing_generation(self) -> bool:
        """``follow_routing_generation`` of the counter's value now (one Redis GET; False when
        Redis cannot answer)."""
        try:
            generation = self.redis.get(ROUTING_GENERATION)
        except Exception:
            return False
        return self.follow_routing_generation(generation)

    @property
    def redis(self):
        return redis_client(self.settings.redis_url)

    @cached_property
    def locks(self) -> Locks:
        """The named locks' leases (an event's ``locks:``)."""
        return Locks(self.redis, self.settings.lock_lease_s, poll_s=self.settings.lock_poll_s)
