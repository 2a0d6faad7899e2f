"""Identities that never come back (issue 18): no internal id is handed out twice, on fresh
SQLite databases and on ones migrated from before 0006, and no cache serves an entry for
another tenant, package or version than asked for. The whole sequence across processes is
tests/e2e/test_identities.py."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from jobico_core.db import (
    INTEGER_ID_TABLES,
    ApiKey,
    Base,
    EnvVariable,
    Execution,
    Package,
    PackageVersion,
    RepoFile,
    upgrade_schema,
)
from jobico_core.package import parse_package
from jobico_core.services import environment, files, ingest, packages, tenants
from jobico_core.services.packages import VersionInfo, cached_version, load_version, route
from tests.waiting import wait_until

from .helpers import PERSON_SCHEMA, package_yaml, wait_for_lock_waits, wasm


def _alembic(url: str):
    from pathlib import Path

    from alembic.config import Config

    from jobico_core.db import __file__ as db_file
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db_file).resolve().parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["configure_logger"] = False
    return cfg


def test_every_table_with_an_integer_id_never_reuses_it():
    """The class of bug: a new table with an integer id must be listed, and AUTOINCREMENT on SQLite."""
    integer_ids = sorted(t.name for t in Base.metadata.tables.values()
                         if [c.type.python_type for c in t.primary_key.columns] == [int])
    assert integer_ids == sorted(INTEGER_ID_TABLES)
    for name in INTEGER_ID_TABLES:
        assert Base.metadata.tables[name].dialect_options["sqlite"]["autoincrement"] is True, name


# one row of each table with an integer id, made (and removed) the way the platform does
def _make_key(ctx, n):
    row, _ = tenants.create_key(ctx, "t1", f"k{n}")
    return row.id


def _make_file(ctx, n):
    return files.upload(ctx, "t1", f"f{n}.json", json.dumps({"n": n}).encode()).id


def _make_env(ctx, n):
    environment.set_variable(ctx, "t1", f"V{n}", "x", secret=True)
    with ctx.db.session() as s:
        return s.scalar(select(EnvVariable.id).where(EnvVariable.tenant_id == "t1", EnvVariable.name == f"V{n}"))


def _make_package(ctx, n):
    return _deploy(ctx, f"p{n}", f"e{n}").version_id


def _make_version(ctx, n):
    return _deploy(ctx, f"q{n}", f"g{n}").version_id


def _deploy(ctx, pkg, event):
    if not files.list_files(ctx, "t1", kind="wasm"):
        files.upload(ctx, "t1", "echo.wasm", wasm("echo"))
        files.upload(ctx, "t1", "person.json", json.dumps(PERSON_SCHEMA).encode())
    return packages.deploy(ctx, "t1", package_yaml(pkg, event))


def _package_id(ctx, version_id):
    with ctx.db.session() as s:
        return s.get(PackageVersion, version_id).package_id


MAKERS = {"api_keys": (_make_key, lambda ctx, n: tenants.delete_key(ctx, "t1", f"k{n}"), lambda ctx, i: i),
          "files": (_make_file, None, lambda ctx, i: i),
          "env_variables": (_make_env, lambda ctx, n: environment.unset_variable(ctx, "t1", f"V{n}"),
                            lambda ctx, i: i),
          "packages": (_make_package, lambda ctx, n: packages.delete_package(ctx, "t1", f"p{n}"), _package_id),
          "package_versions": (_make_version, lambda ctx, n: packages.delete_package(ctx, "t1", f"q{n}"),
                               lambda ctx, i: i)}
MODELS = {"api_keys": ApiKey, "files": RepoFile, "env_variables": EnvVariable, "packages": Package,
          "package_versions": PackageVersion}


@pytest.mark.parametrize("table", INTEGER_ID_TABLES)
def test_sqlite_never_hands_a_deleted_id_out_again(sqlite_ctx, table):
    ctx = sqlite_ctx
    make, remove, ident = MAKERS[table]
    first = make(ctx, 1)
    first_id = ident(ctx, first)
    if remove is not None:
        remove(ctx, 1)
    else:  # files are removed with their tenant only: remove the row as that would
        with ctx.db.session() as s:
            s.execute(sa.delete(RepoFile).where(RepoFile.id == first_id))
    with ctx.db.session() as s:
        assert s.get(MODELS[table], first_id) is None  # the highest id is free again: SQLite would reuse it
    second_id = ident(ctx, make(ctx, 2))
    assert second_id > first_id, f"{table}: id {first_id} handed out again"
    ctx.db.engine.dispose()


def test_a_pre_0006_sqlite_database_is_migrated_with_its_data(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    from alembic import command
    command.upgrade(_alembic(url), "0005")
    engine = sa.create_engine(url)
    now = "2026-12-01 10:00:00.000000"
    with engine.begin() as c:
        c.exec_driver_sql("PRAGMA foreign_keys=ON")
        c.exec_driver_sql(f"INSERT INTO tenants (id, webhook_auth, created_at) VALUES ('t1', 'key', '{now}')")
        c.exec_driver_sql("INSERT INTO api_keys (tenant_id, name, key_hash, prefix, created_at) "
                          f"VALUES ('t1', 'default', 'h1', 'jbk_', '{now}')")
        c.exec_driver_sql("INSERT INTO files (tenant_id, name, kind, sha256, size, object_key, uploaded_at) "
                          f"VALUES ('t1', 'a.json', 'schema', 's', 2, 'k', '{now}')")
        c.exec_driver_sql("INSERT INTO env_variables (tenant_id, name, secret, sealed, key_id, updated_at) "
                          f"VALUES ('t1', 'V', 1, 'v1:x:y', 'x', '{now}')")
        for pid in (1, 2):
            c.exec_driver_sql("INSERT INTO packages (id, tenant_id, name, active_version, created_at, updated_at) "
                              f"VALUES ({pid}, 't1', 'p{pid}', 1, '{now}', '{now}')")
            c.exec_driver_sql("INSERT INTO package_versions (id, package_id, number, source, spec, pins, "
                              f"created_at) VALUES ({pid}, {pid}, 1, 'src', '{{}}', '{{}}', '{now}')")
        c.exec_driver_sql("INSERT INTO event_routes (tenant_id, event, package_id) VALUES ('t1', 'e1', 1)")
        # package p2 was deleted before the upgrade, its ids (2) are free; an execution of version 9 of a
        # package deleted even earlier still names it
        c.exec_driver_sql("DELETE FROM packages WHERE id = 2")
        c.exec_driver_sql("INSERT INTO executions (id, tenant_id, package, version, version_id, event, queue, "
                          "status, payload, stdout, attempts, dead_lettered, chain_depth, trigger, created_at) "
                          "VALUES ('0193a000-0000-7000-8000-000000000001', 't1', 'gone', 1, 9, 'e', 'q', "
                          f"'succeeded', '{{}}', '', 1, 0, 0, 'webhook', '{now}')")
    engine.dispose()

    upgrade_schema(url)

    engine = sa.create_engine(url)
    with engine.begin() as c:
        c.exec_driver_sql("PRAGMA foreign_keys=ON")
        for table in INTEGER_ID_TABLES:
            sql = c.exec_driver_sql(f"SELECT sql FROM sqlite_master WHERE name = '{table}'").scalar()
            assert "AUTOINCREMENT" in sql, sql
        # the data is all there, references intact
        assert c.exec_driver_sql("SELECT id, name FROM packages").all() == [(1, "p1")]
        assert c.exec_driver_sql("SELECT id, package_id FROM package_versions").all() == [(1, 1)]
        assert c.exec_driver_sql("SELECT * FROM event_routes").all() == [("t1", "e1", 1)]
        assert c.exec_driver_sql("SELECT name FROM api_keys").all() == [("default",)]
        assert c.exec_driver_sql("SELECT name FROM files").all() == [("a.json",)]
        assert c.exec_driver_sql("SELECT name FROM env_variables").all() == [("V",)]
        assert c.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        # unique constraints and cascades survived the rebuild
        with pytest.raises(sa.exc.IntegrityError), c.begin_nested():
            c.exec_driver_sql("INSERT INTO packages (tenant_id, name, active_version, created_at, updated_at) "
                              f"VALUES ('t1', 'p1', 1, '{now}', '{now}')")
        # new ids: above every id in use, and for versions above every id an execution names (package
        # ids freed before the upgrade are named by nothing left: the table cannot remember them)
        pkg = c.exec_driver_sql("INSERT INTO packages (tenant_id, name, active_version, created_at, updated_at) "
                                f"VALUES ('t1', 'p3', 1, '{now}', '{now}') RETURNING id").scalar()
        assert pkg == 2
        ver = c.exec_driver_sql("INSERT INTO package_versions (package_id, number, source, spec, pins, created_at) "
                                f"VALUES ({pkg}, 1, 's', '{{}}', '{{}}', '{now}') RETURNING id").scalar()
        assert ver == 10
        # from now on a deleted id never comes back
        c.exec_driver_sql(f"DELETE FROM packages WHERE id = {pkg}")  # cascades to its version
        assert c.exec_driver_sql("SELECT count(*) FROM package_versions WHERE id = 10").scalar() == 0
        again = c.exec_driver_sql("INSERT INTO packages (tenant_id, name, active_version, created_at, updated_at) "
                                  f"VALUES ('t1', 'p3', 1, '{now}', '{now}') RETURNING id").scalar()
        assert again == 3
        assert c.exec_driver_sql("INSERT INTO package_versions (package_id, number, source, spec, pins, created_at) "
                                 f"VALUES ({again}, 1, 's', '{{}}', '{{}}', '{now}') RETURNING id").scalar() == 11
        key = c.exec_driver_sql("INSERT INTO api_keys (tenant_id, name, key_hash, prefix, created_at) "
                                f"VALUES ('t1', 'k2', 'h2', 'jbk_', '{now}') RETURNING id").scalar()
        c.exec_driver_sql(f"DELETE FROM api_keys WHERE id = {key}")
        assert c.exec_driver_sql("INSERT INTO api_keys (tenant_id, name, key_hash, prefix, created_at) "
                                 f"VALUES ('t1', 'k2', 'h2', 'jbk_', '{now}') RETURNING id").scalar() == key + 1
    engine.dispose()


def test_the_migration_is_harmless_on_postgresql(pg_url):
    """PostgreSQL sequences never go back: 0006 changes nothing there (and the schema still matches)."""
    from alembic import command
    from alembic.script import ScriptDirectory
    command.upgrade(_alembic(pg_url), "0005")
    engine = sa.create_engine(pg_url)
    with engine.begin() as c:
        c.exec_driver_sql("INSERT INTO tenants (id, webhook_auth, created_at) VALUES ('t1', 'key', now())")
        c.exec_driver_sql("INSERT INTO packages (tenant_id, name, active_version, created_at, updated_at) "
                          "VALUES ('t1', 'p', 1, now(), now())")
        c.exec_driver_sql("DELETE FROM packages")
    upgrade_schema(pg_url)
    with engine.begin() as c:
        head = ScriptDirectory.from_config(_alembic(pg_url)).get_current_head()
        assert c.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head
        assert c.exec_driver_sql("INSERT INTO packages (tenant_id, name, active_version, created_at, updated_at) "
                                 "VALUES ('t1', 'p', 1, now(), now()) RETURNING id").scalar() == 2
    engine.dispose()


# -- caches ------------------------------------------------------------------------------------
def _foreign(info: VersionInfo, **changes) -> VersionInfo:
    import dataclasses
    return dataclasses.replace(info, **changes)


def test_a_version_cache_entry_of_another_tenant_or_package_is_refused(sqlite_ctx):
    ctx = sqlite_ctx
    tenants.create_tenant(ctx, "t2")
    mine = _deploy(ctx, "people", "person_added")
    vid = mine.version_id
    other_spec = parse_package(package_yaml("theirs", "their_event"))
    for planted in (_foreign(mine, tenant="t2"), _foreign(mine, package="theirs", spec=other_spec),
                    _foreign(mine, number=7)):
        ctx.versions.put(vid, planted)
        assert cached_version(ctx, vid, "t1", "people", 1) is None   # refused...
        assert ctx.versions.get(vid) is None                         # ...and dropped
        ctx.versions.put(vid, planted)
        got = route(ctx, "t1", "person_added")
        assert got.is_for("t1", "people", 1) and "person_added" in got.spec.events
        ctx.versions.put(vid, planted)
        got = load_version(ctx, vid, "t1", "people", 1)
        assert got is not None and got.is_for("t1", "people", 1) and got.spec.to_dict() == mine.spec.to_dict()
    # asked for another tenant's identity, the database's row is not served either
    ctx.versions.pop(vid)
    assert load_version(ctx, vid, "t2", "people", 1) is None
    assert load_version(ctx, vid, "t1", "people", 2) is None
    ctx.db.engine.dispose()


def test_the_webhook_cache_refuses_a_route_of_another_tenant(sqlite_ctx):
    ctx = sqlite_ctx
    tenants.create_tenant(ctx, "t2")
    _, key = tenants.create_key(ctx, "t1", "hook")
    mine = _deploy(ctx, "people", "person_added")
    other_spec = parse_package(package_yaml("theirs", "elsewhere"))
    cache = ctx.fresh_webhook_cache()
    for planted in (_foreign(mine, tenant="t2"), _foreign(mine, package="theirs", spec=other_spec)):
        cache.put(("route", "t1", "person_added"), planted)
        ids = ingest.accept(ctx, "t1", "person_added", b'{"data":[{"name":"Ada"}]}',
                            {"Authorization": f"Bearer {key}"})
        with ctx.db.session() as s:
            row = s.get(Execution, ids[0])
        assert (row.tenant_id, row.package, row.version_id) == ("t1", "people", mine.version_id)
    ctx.db.engine.dispose()


def _until_gone(worker_ctx, info: VersionInfo, deadline_s: float = 10.0) -> None:
    """Poll (with a deadline) until the worker Context no longer serves the deleted version."""
    wait_until(lambda: load_version(worker_ctx, info.version_id, info.tenant, info.package, info.number) is None,
               deadline_s, what="the deleted version no longer served", interval=0.02)


def test_every_process_empties_its_version_cache_when_routing_changes(sqlite_ctx):
    """Two Contexts (two processes' worth): a delete served by one empties the other's version
    cache through ROUTING_GENERATION, so its worker no longer runs the deleted package."""
    from jobico_core.services.context import Context
    ctx = sqlite_ctx
    other = Context(ctx.settings)
    info = _deploy(ctx, "people", "person_added")
    assert load_version(other, info.version_id, "t1", "people", 1) is not None
    assert other.versions.get(info.version_id) is not None
    packages.delete_package(ctx, "t1", "people")
    _until_gone(other, info)  # within VERSIONS_FOLLOW_S
    assert other.versions.get(info.version_id) is None
    other.db.engine.dispose()
    ctx.db.engine.dispose()


def test_a_package_recreated_under_its_name_runs_nothing_of_the_old(sqlite_ctx):
    """Queued and dead-lettered executions of a deleted package never run under its successor of
    the same name, in a worker Context that had the old version cached."""
    from jobico_core.errors import Conflict
    from jobico_core.services.context import Context
    from jobico_core.services.executions import retry_execution
    from jobico_core.services.ingest import submit
    from jobico_runtime import Runtime
    from jobico_worker.executor import dead_letter, run_execution
    ctx = sqlite_ctx
    worker = Context(ctx.settings)
    old = _deploy(ctx, "people", "person_added")
    queued, parked = submit(ctx, old, "person_added", ['{"name":"Ada"}', '{"name":"Bo"}'], submitter="k",
                            trigger="webhook")
    dead_letter(ctx, parked, "broker gone")
    assert load_version(worker, old.version_id, "t1", "people", 1) is not None  # the worker has it cached
    packages.delete_package(ctx, "t1", "people")
    files.upload(ctx, "t1", "greet.wasm", wasm("greet"))
    new = packages.deploy(ctx, "t1", package_yaml("people", "person_added", module="greet.wasm"))
    assert new.number == 1 and new.version_id > old.version_id

    _until_gone(worker, old)  # the worker's version cache follows the delete (VERSIONS_FOLLOW_S)
    runtime = Runtime()
    done = run_execution(worker, runtime, queued, '{"name":"Ada"}', worker="w")
    assert (done["status"], done["result"]) == ("cancelled", None)
    assert "was deleted" in done["message"]
    with pytest.raises(Conflict, match="was deleted"):
        retry_execution(ctx, "t1", parked)
    fresh = submit(ctx, packages.route(ctx, "t1", "person_added"), "person_added", ['{"name":"Cy"}'],
                   submitter="k", trigger="webhook")[0]
    done = run_execution(worker, runtime, fresh, '{"name":"Cy"}', worker="w")
    assert (done["status"], done["package"], done["result"]) == ("succeeded", "people", "Hello, Cy!")
    ctx.db.engine.dispose()


# -- a deleted tenant or package gets no row afterwards, even from a trigger already under way ----------
def _executions_of(ctx, tenant: str) -> list:
    with ctx.db.session() as s:
        return list(s.scalars(select(Execution.id).where(Execution.tenant_id == tenant)))


def test_no_execution_is_recorded_for_a_version_deleted_after_its_route_was_read(sqlite_ctx, api):
    """A trigger that read the route before the delete (a cached route, a slow request) records
    nothing after it: 404, on SQLite and PostgreSQL."""
    from jobico_core.services.executions import VersionGone
    for ctx, tenant in ((sqlite_ctx, "t1"), (api.ctx, api.deployed_tenant().id)):
        if tenant == "t1":
            _deploy(ctx, "people", "person_added")
        info = route(ctx, tenant, "person_added")
        ids = ingest.submit(ctx, info, "person_added", ['{"name":"Ada"}'], submitter="k", trigger="webhook")
        assert _executions_of(ctx, tenant) == ids
        tenants.delete_tenant(ctx, tenant)
        for payloads in (['{"name":"Bo"}'], ['{"name":"Bo"}', '{"name":"Cy"}']):
            with pytest.raises(VersionGone, match="was deleted while the events were being accepted"):
                ingest.submit(ctx, info, "person_added", payloads, submitter="k", trigger="webhook")
        assert _executions_of(ctx, tenant) == []
        tenants.create_tenant(ctx, tenant)
        assert _executions_of(ctx, tenant) == []
    sqlite_ctx.db.engine.dispose()


def test_a_trigger_racing_a_tenant_delete_leaves_nothing_under_the_name(api):
    """PostgreSQL, both orders: the delete is under way when the rows come (they wait, then go in
    nowhere), or rows are under way when the delete comes (it waits, then deletes them too)."""
    import threading

    from jobico_core.services.executions import VersionGone, new_executions
    ctx = api.ctx
    tenant = api.deployed_tenant().id
    info = route(ctx, tenant, "person_added")

    # 1. the delete is under way (uncommitted) when a request records its rows
    outcome = {}

    def accept():
        try:
            outcome["ids"] = ingest.submit(ctx, info, "person_added", ['{"name":"Ada"}'], submitter="k",
                                           trigger="webhook")
        except VersionGone as exc:
            outcome["gone"] = exc

    with ctx.db.engine.connect() as deleting:
        deleting.exec_driver_sql("DELETE FROM tenants WHERE id = %s", (tenant,))
        t = threading.Thread(target=accept)
        t.start()
        wait_for_lock_waits(ctx.db.engine)
        deleting.commit()
    t.join(60)
    assert "gone" in outcome and "ids" not in outcome
    assert _executions_of(ctx, tenant) == []

    # 2. rows are under way (their version locked, uncommitted) when the tenant is deleted
    tenant = api.deployed_tenant("tenant_2").id
    info = route(ctx, tenant, "person_added")
    row = dict(new_executions(info, "person_added", ['{"name":"Bo"}'], submitter="k",
                                     trigger="webhook")[0].__dict__)
    with ctx.db.engine.connect() as recording:
        recording.exec_driver_sql("SELECT 1 FROM package_versions WHERE id = %s FOR KEY SHARE", (info.version_id,))
        recording.execute(sa.insert(Execution.__table__), [row])
        deleted = threading.Thread(target=tenants.delete_tenant, args=(ctx, tenant))
        deleted.start()
        wait_for_lock_waits(ctx.db.engine)
        recording.commit()
    deleted.join(60)
    assert not deleted.is_alive()
    assert _executions_of(ctx, tenant) == []


def test_a_rejection_for_a_deleted_tenant_is_not_kept(sqlite_ctx):
    from jobico_core.services import rejections
    ctx = sqlite_ctx
    kept = rejections.record(ctx, "t1", event=None, trigger="mqtt", source="a/b", reason="not_deployed",
                             message="m", errors={}, payload=b"x")
    assert rejections.exists(ctx, kept)
    tenants.delete_tenant(ctx, "t1")
    late = rejections.record(ctx, "t1", event=None, trigger="mqtt", source="a/b", reason="not_deployed",
                             message="m", errors={}, payload=b"x")
    tenants.create_tenant(ctx, "t1")
    assert not rejections.exists(ctx, kept) and not rejections.exists(ctx, late)
    assert rejections.list_rejections(ctx, "t1")[0] == []
    ctx.db.engine.dispose()


def test_a_version_read_while_its_package_is_deleted_is_gone_not_an_error(sqlite_ctx):
    """Found by the stateful suite: the worker read a version, then (a statement later) its package,
    which a delete removed in between, and failed on the missing package (an internal error).
    Here the delete lands right after the first statement that reads the version."""
    from jobico_core.services.context import Context
    ctx = sqlite_ctx
    worker = Context(ctx.settings)
    info = _deploy(ctx, "people", "person_added")
    fired: list[str] = []

    def delete_after_the_version_is_read(conn, cursor, statement, *_):
        if not fired and "FROM package_versions" in statement:
            fired.append(statement)
            packages.delete_package(ctx, "t1", "people")  # another Context: its own connection

    sa.event.listen(worker.db.engine, "after_cursor_execute", delete_after_the_version_is_read)
    try:
        got = load_version(worker, info.version_id, "t1", "people", 1)
    finally:
        sa.event.remove(worker.db.engine, "after_cursor_execute", delete_after_the_version_is_read)
    assert fired, "the version was never read"
    assert got is None or (got.tenant, got.package, got.number) == ("t1", "people", 1)
    _until_gone(worker, info)  # and gone once the delete is seen (VERSIONS_FOLLOW_S)
    worker.db.engine.dispose()
