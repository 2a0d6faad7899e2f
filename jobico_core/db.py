"""SQLAlchemy 2.0 models and session factory.

PostgreSQL in production and tests; SQLite for the embedded default. The
schema is created by Alembic (``migrations/``), never by ``create_all`` in
the running platform.
"""
from __future__ import annotations

import datetime as dt
import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker
from sqlalchemy.types import TypeDecorator

_U64 = 1 << 64
_I64 = 1 << 63


def as_signed64(value: int) -> int:
    """An unsigned 64-bit integer as the signed BIGINT that keeps it (what :class:`U64` stores)."""
    return value - _U64 if value >= _I64 else value


class U64(TypeDecorator):
    """An unsigned 64-bit integer kept losslessly in a signed BIGINT."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Any) -> int | None:
        if value is None:
            return None
        if not 0 <= value < _U64:
            raise ValueError(f"{value} is not an unsigned 64-bit integer")
        return as_signed64(value)

    def process_result_value(self, value: int | None, dialect: Any) -> int | None:
        if value is None:
            return None
        return value + _U64 if value < 0 else value


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


# Internal ids are never handed out twice: caches and queued tasks name rows by id, so an id that
# came back after a delete would make them serve the deleted row's successor (another tenant's
# package, say). PostgreSQL sequences never go back; SQLite reuses the highest rowid after a delete
# unless the table is AUTOINCREMENT. Every table with an integer id carries this (migration 0006);
# the others have UUIDv7 ids (executions, rejected events) or natural keys.
NEVER_REUSED = {"sqlite_autoincrement": True}
INTEGER_ID_TABLES = ("api_keys", "files", "env_variables", "packages", "package_versions")


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # How the webhook authenticates callers: "key" (bearer key), "hmac" (signed) or "none".
    webhook_auth: Mapped[str] = mapped_column(String(8), default="key")
    signing_secret: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # After a rotation, the secret it replaced stays valid until previous_secret_expires_at (or
    # until revoked): senders move to the new one without a gap.
    previous_signing_secret: Mapped[str | None] = mapped_column(String(128), nullable=True)
    previous_secret_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A request header whose value names the submitter of a webhook event (e.g. X-User);
    # None: the submitter is the key's name ("hmac"/"anonymous" for those modes).
    submitter_header: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    keys: Mapped[list[ApiKey]] = relationship(back_populates="tenant", cascade="all, delete-orphan")


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_api_keys_tenant_name"), NEVER_REUSED)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    # sha256 of the key: keys are 256-bit random tokens, so a fast hash is enough
    # (like GitHub tokens); the key itself is shown once, at creation.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    tenant: Mapped[Tenant] = relationship(back_populates="keys")


class RepoFile(Base):
    """A named file in a tenant's repository; its content is addressed by sha256."""
    __tablename__ = "files"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_files_tenant_name"), NEVER_REUSED)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # wasm | schema
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    object_key: Mapped[str] = mapped_column(String(256))
    uploaded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class EnvVariable(Base):
    """A tenant's stored environment variable (``jobico env set``), encrypted at rest
    (jobico_core.secrets); packages reference it as ``{secret: name}``. ``secret`` ones are
    never shown again and are masked in everything an execution records."""
    __tablename__ = "env_variables"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_env_variables_tenant_name"), NEVER_REUSED)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    secret: Mapped[bool] = mapped_column(Boolean, default=True)
    sealed: Mapped[str] = mapped_column(Text)        # "v1:<key id>:<base64 nonce|ciphertext|tag>"
    key_id: Mapped[str] = mapped_column(String(16))  # the operator key it is sealed with
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Package(Base):
    __tablename__ = "packages"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_packages_tenant_name"), NEVER_REUSED)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))  # the YAML's `id`
    active_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    versions: Mapped[list[PackageVersion]] = relationship(
        back_populates="package", cascade="all, delete-orphan", order_by="PackageVersion.number")


class PackageVersion(Base):
    """An immutable deployed version: source YAML, parsed form and pinned file hashes."""
    __tablename__ = "package_versions"
    __table_args__ = (UniqueConstraint("package_id", "number", name="uq_package_versions_number"), NEVER_REUSED)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    spec: Mapped[dict] = mapped_column(JSON)  # normalised package (jobico_core.package.PackageSpec.to_dict)
    pins: Mapped[dict] = mapped_column(JSON)  # {file name: sha256}
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    package: Mapped[Package] = relationship(back_populates="versions")


class EventRoute(Base):
    """Which package owns an event id within a tenant (the webhook's lookup).

    The unique key enforces the contract: an event id belongs to one package.
    """
    __tablename__ = "event_routes"
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    event: Mapped[str] = mapped_column(String(64), primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id", ondelete="CASCADE"), index=True)


class Execution(Base):
    __tablename__ = "executions"
    __table_args__ = (
        Index("ix_executions_tenant_id_desc", "tenant_id", "id"),
        Index("ix_executions_tenant_package", "tenant_id", "package", "id"),
        Index("ix_executions_tenant_status", "tenant_id", "status"),
        # Partial (non-NULL rows only): a webhook's INSERT leaves seq, chained_from and
        # resubmitted_from NULL, so it adds no entry to these three (migration 0011); every query
        # on them filters `col = x` / `col > x` / `IN`, which implies the column is not NULL.
        Index("ix_executions_tenant_seq", "tenant_id", "seq", postgresql_where=text("seq IS NOT NULL"),
              sqlite_where=text("seq IS NOT NULL")),
        Index("ix_executions_chained_from", "chained_from", postgresql_where=text("chained_from IS NOT NULL"),
              sqlite_where=text("chained_from IS NOT NULL")),
        Index("ix_executions_resubmitted_from", "resubmitted_from",
              postgresql_where=text("resubmitted_from IS NOT NULL"),
              sqlite_where=text("resubmitted_from IS NOT NULL")),
        # A schedule fires a given time once, whichever beat process fires it (cron triggers only).
        Index("uq_executions_scheduled_fire", "tenant_id", "event", "scheduled_at", unique=True,
              postgresql_where=text("scheduled_at IS NOT NULL"), sqlite_where=text("scheduled_at IS NOT NULL")),
        # The lease recovery's scan (jobico_core.services.leases): running rows only, a handful.
        Index("ix_executions_running_lease", "lease_until", postgresql_where=text("status = 'running'"),
              sqlite_where=text("status = 'running'")),
        # A debounced execution's look for a later one of its key (jobico_worker.flow): queued rows only.
        Index("ix_executions_debounce", "tenant_id", "package", "event", "debounce_key",
              postgresql_where=text("debounce_key IS NOT NULL AND status = 'queued'"),
              sqlite_where=text("debounce_key IS NOT NULL AND status = 'queued'")),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # UUIDv7
    tenant_id: Mapped[str] = mapped_column(String(64))
    package: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    # PackageVersion.id: versions are immutable, so workers cache them by this id
    # (a deleted and re-created package restarts its numbering, never its ids).
    version_id: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(64))
    queue: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    payload: Mapped[str] = mapped_column(Text)  # canonical JSON the guest receives
    code: Mapped[int | None] = mapped_column(U64, nullable=True)
    result: Mapped[str | None] = mapped_column(Text, nullable=True)
    stdout: Mapped[str] = mapped_column(Text, default="")
    limit: Mapped[str | None] = mapped_column(String(16), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)  # trap / invalid-module / infra message
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    dead_lettered: Mapped[bool] = mapped_column(Boolean, default=False)
    chained_from: Mapped[str | None] = mapped_column(String(36), nullable=True)
    chain_depth: Mapped[int] = mapped_column(Integer, default=0)
    submitter: Mapped[str | None] = mapped_column(String(128), nullable=True)
    trigger: Mapped[str] = mapped_column(String(16), default="webhook")  # webhook | cron | chain
    scheduled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)  # cron: the fire time
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)
    duration_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Position in the stream of finished executions (the SSE `id:`), assigned when recorded.
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The event's named locks when it was created, sorted and comma-separated (lock names are
    # ids: no commas); None: none. ``lock_names`` reads it.
    locks: Mapped[str | None] = mapped_column(String(600), nullable=True)
    # Queued behind a lock: "<lock> (held by <execution id>)"; None once it runs.
    waiting_for: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # A resubmission's original (``jobico executions resubmit``).
    resubmitted_from: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # ``jobico executions cancel`` of a running execution: when it was asked, and by whom.
    cancel_requested_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancelled_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # While running: until when its worker holds it (set by the claim, renewed every third of
    # JOBICO_EXECUTION_LEASE_SECONDS); past it, the lease recovery takes the execution back.
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The event's flow control as resolved for this payload (jobico_core.flow.resolve); None: none.
    flow: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Its debounce key (from ``flow``), for the look for a later execution of the same key.
    debounce_key: Mapped[str | None] = mapped_column(String(300), nullable=True)
    # ``superseded``: the later execution of its debounce key that ran in its place.
    superseded_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # 1..10 (the event's ``priority:`` or the request's X-Jobico-Priority): its task takes the
    # best of its queue's prioritised executions (jobico_core.priority); None: its own, FIFO.
    priority: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Its trace (jobico_core.tracing; None: tracing was off): the trace id and the span its own
    # spans hang under (the request's, or the chained-from execution's record), as hex.
    trace_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    trace_parent: Mapped[str | None] = mapped_column(String(16), nullable=True)
    logs: Mapped[list[ExecutionLog]] = relationship(
        back_populates="execution", cascade="all, delete-orphan", order_by="ExecutionLog.idx")


class RejectedEvent(Base):
    """An event a trigger without a caller to answer (MQTT) could not accept: kept so the tenant can
    see why (``GET /api/v1/rejections``) instead of the message vanishing. Bounded: the payload is
    kept up to REJECTED_PAYLOAD_CHARS, and rows older than REJECTED_KEEP_DAYS are deleted."""
    __tablename__ = "rejected_events"
    __table_args__ = (Index("ix_rejected_events_tenant_id", "tenant_id", "id"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # UUIDv7: time-ordered
    tenant_id: Mapped[str] = mapped_column(String(64))
    event: Mapped[str | None] = mapped_column(String(64), nullable=True)  # None: no event matched
    trigger: Mapped[str] = mapped_column(String(16))  # mqtt
    source: Mapped[str] = mapped_column(Text)  # the MQTT topic (within the tenant's namespace)
    reason: Mapped[str] = mapped_column(String(32))  # bad_request | too_large | invalid | not_deployed
    message: Mapped[str] = mapped_column(Text)
    errors: Mapped[dict] = mapped_column(JSON, default=dict)
    payload: Mapped[str] = mapped_column(Text, default="")  # the start of the payload, as text
    payload_size: Mapped[int] = mapped_column(Integer, default=0)  # bytes received
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


REJECTED_PAYLOAD_CHARS = 1024
REJECTED_KEEP_DAYS = 7


class Counter(Base):
    """Named monotonic counters for databases without sequences (SQLite)."""
    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


def next_seq(session: Session, name: str = "execution_seq") -> int:
    """The next value of a monotonic sequence (PostgreSQL SEQUENCE, or a counter row)."""
    from sqlalchemy import update
    if session.get_bind().dialect.name == "postgresql":
        return int(session.execute(text(f"SELECT nextval('{name}')")).scalar_one())
    return int(session.execute(update(Counter).where(Counter.name == name).values(value=Counter.value + 1)
                               .returning(Counter.value)).scalar_one())


class ExecutionLog(Base):
    __tablename__ = "execution_logs"
    execution_id: Mapped[str] = mapped_column(ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    level: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)
    execution: Mapped[Execution] = relationship(back_populates="logs")


TERMINAL_STATUSES = frozenset({"succeeded", "failed", "trapped", "timed_out", "limit_exceeded",
                               "invalid_module", "cancelled", "superseded"})
STATUSES = ("queued", "running", *sorted(TERMINAL_STATUSES))


# -- engine & sessions -----------------------------------------------------------
_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


# PostgreSQL statements of the running platform (not migrations) are bounded: server-side by
# statement_timeout (this default, or the URL's own: ?options=-c%20statement_timeout%3D<ms>) and
# client-side by STATEMENT_GRACE_S more, so a server that accepted the connection but answers
# nothing (frozen, SIGSTOP, a hung host) costs a request or a task that long, then a 503 / a retry.
DEFAULT_STATEMENT_TIMEOUT_MS = 30_000
STATEMENT_GRACE_S = 2.0
_PG_CONNECT_ARGS = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                    "keepalives_count": 3}


@functools.cache
def _bounded_connection_class():
    import psycopg
    wait_timeout = getattr(psycopg.errors, "_WaitTimeout", None)

    class BoundedConnection(psycopg.Connection):
        jobico_wait_s: float | None = None

        def wait(self, gen, interval=0.1, timeout=None):  # psycopg's hook for every statement round trip
            timeout = self.jobico_wait_s if timeout is None else timeout
            try:
                return super().wait(gen, interval=interval, timeout=timeout)
            except Exception as exc:
                if wait_timeout is None or not isinstance(exc, wait_timeout):
                    raise
                self.pgconn.finish()  # state unknown: closed, so the pool discards it
                raise psycopg.OperationalError(
                    f"the database did not answer within {timeout:g} s (connection closed)") from None

    return BoundedConnection


def _bounded_connect(dialect: Any, _record: Any, cargs: tuple, cparams: dict) -> Any:
    import re
    options = cparams.get("options") or ""
    found = re.search(r"statement_timeout\s*=\s*(\d+)", options)
    if found is None:
        cparams["options"] = f"{options} -c statement_timeout={DEFAULT_STATEMENT_TIMEOUT_MS}".strip()
    ms = int(found.group(1)) if found else DEFAULT_STATEMENT_TIMEOUT_MS
    conn = _bounded_connection_class().connect(*cargs, **cparams)
    conn.jobico_wait_s = ms / 1000 + STATEMENT_GRACE_S if ms else None
    return conn


def make_engine(url: str, bounded: bool = False) -> Engine:
    """``bounded``: the platform's engines (see DEFAULT_STATEMENT_TIMEOUT_MS); migrations are not."""
    if url.startswith("sqlite"):
        eng = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(eng, "connect", _sqlite_pragmas)
    else:
        # No pre-ping: it costs a round trip per checkout, more than most of our statements
        # (bench: two per executed event). A connection that died is found by the statement
        # that uses it; SQLAlchemy then invalidates the whole pool, so after a database restart
        # one request answers 503 (with Retry-After) and one task retries, then all is fresh.
        eng = create_engine(url, pool_size=10, max_overflow=20, pool_recycle=1800,
                            connect_args=dict(_PG_CONNECT_ARGS))
        if bounded and eng.dialect.driver == "psycopg":
            event.listen(eng, "do_connect", _bounded_connect)
    return eng


def get_engine(url: str) -> Engine:
    """One engine per URL and process (engines are not fork-safe: call after fork)."""
    import os
    key = f"{os.getpid()}:{url}"
    with _engines_lock:
        eng = _engines.get(key)
        if eng is None:
            eng = _engines[key] = make_engine(url, bounded=True)
        return eng


class Database:
    """A session factory bound to one URL."""

    def __init__(self, url: str):
        self.url = url
        self.engine = get_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on error."""
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def autocommit(self) -> Iterator[Any]:
        """A connection in autocommit: a single statement is its own transaction
        (no BEGIN/COMMIT round trips)."""
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            yield conn

    @contextmanager
    def driver_autocommit(self) -> Iterator[Any]:
        """The pool's psycopg connection itself, in autocommit, for ``DriverStatement``s (PostgreSQL
        only): a worker's claim and record, where SQLAlchemy's execution machinery cost ~150 us of
        CPU per statement on top of psycopg's own. psycopg's errors come out as SQLAlchemy's
        (``DBAPIError`` and its subclasses, as through ``autocommit``), and a connection found
        lost is invalidated (not returned to the pool)."""
        import psycopg
        from sqlalchemy.exc import DBAPIError
        fairy = self.engine.raw_connection()
        conn: Any = fairy.driver_connection
        lost = False
        try:
            conn.autocommit = True
            yield conn
        except psycopg.Error as exc:
            err: Any = exc
            lost = self.engine.dialect.is_disconnect(err, conn, None)
            if lost:
                fairy.invalidate(exc)
            raise DBAPIError.instance(None, None, exc, psycopg.Error, connection_invalidated=lost) from exc
        finally:
            if not lost and not conn.closed:  # back to the pool as it lends it, whatever was raised
                conn.autocommit = False
            fairy.close()

    @contextmanager
    def session_or(self, existing: Session | None) -> Iterator[Session]:
        """The caller's session when given (it owns the commit), else a unit of work."""
        if existing is not None:
            yield existing
        else:
            with self.session() as s:
                yield s

    def ping(self) -> None:
        from sqlalchemy import text
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))


class DriverStatement:
    """A SQLAlchemy statement with RETURNING, compiled once for PostgreSQL + psycopg and run on the
    pool's psycopg connection (``Database.driver_autocommit``). Parameters are the statement's
    ``b_``-prefixed bind names; the compiled statement's other binds (values written in the
    statement) are fixed. The column types' own conversions (``TypeDecorator``: ``U64``,
    ``UTCDateTime``) are applied to parameters and results, as SQLAlchemy applies them; a row is a
    named tuple of the RETURNING columns."""

    def __init__(self, statement: Any):
        self.statement = statement
        self._compiled: tuple | None = None

    def _compile(self, dialect: Any) -> tuple:
        import collections
        comp = self.statement.compile(dialect=dialect)
        mine = {name for name in comp.binds if name.startswith("b_")}
        fixed = {k: v for k, v in comp.construct_params({n: None for n in mine}).items() if k not in mine}
        binds = {name: b.type for name, b in comp.binds.items() if name in mine and isinstance(b.type, TypeDecorator)}
        cols = list(self.statement.exported_columns)
        row = collections.namedtuple("Row", [c.key for c in cols])  # type: ignore[misc]
        results = [(i, c.type) for i, c in enumerate(cols) if isinstance(c.type, TypeDecorator)]
        return str(comp), fixed, binds, row, results

    def first(self, conn: Any, dialect: Any, params: dict) -> Any:
        """The first row the statement returns (or None), on ``conn`` (a psycopg connection)."""
        if self._compiled is None:
            self._compiled = self._compile(dialect)
        sql, fixed, binds, row, results = self._compiled
        values = {**fixed, **params}
        for name, typ in binds.items():
            values[name] = typ.process_bind_param(values[name], dialect)
        found = conn.execute(sql, values).fetchone()
        if found is None:
            return None
        if results:
            found = list(found)
            for i, typ in results:
                found[i] = typ.process_result_value(found[i], dialect)
        return row._make(found)


def upgrade_schema(url: str) -> None:
    """Run Alembic migrations to head (used by `jobico migrate`, `jobico run` and tests)."""
    from pathlib import Path

    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")
