"""Everything a service needs, built once per process from ``Settings``."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from celery import Celery

from ..broker import make_celery, redis_client
from ..db import Database
from ..settings import Settings
from ..storage import ObjectStore, open_store


@dataclass
class Context:
    settings: Settings
    _celery: Celery | None = field(default=None, repr=False)

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

    @property
    def redis(self):
        return redis_client(self.settings.redis_url)
