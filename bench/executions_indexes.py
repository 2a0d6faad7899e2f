#!/usr/bin/env python3
"""The ``executions`` indexes of two schema revisions on a real PostgreSQL (issue 19).

Run: .venv/bin/python bench/executions_indexes.py [--reps 500] [--population 200000]
[--before 0010] [--after head] [--no-plans]

Starts a throw-away PostgreSQL (``tests/services.py``), migrates one database to ``--before``
and one to ``--after``, fills each with the same ``--population`` of executions (20 tenants, 90 %
finished with a stream position, 2 % chained, 0.2 % resubmissions, 1 % queued, 1 % running),
analyses them with a full sample, then:

- prints the plan (``EXPLAIN ANALYZE``, costs off) of the queries that read ``executions`` by
  something other than its id, on both, and the same with SQLite's ``EXPLAIN QUERY PLAN``;
- times a webhook-shaped 100-row INSERT (``INSERT ... SELECT FROM unnest(ids, payloads)``, as
  ``services.executions._insert_columns``), ``--reps`` times per schema, alternated: the server's
  ``EXPLAIN (ANALYZE, BUFFERS)`` execution time and buffer hits, and on another connection the
  plain INSERT's wall time and the CPU time of its server process (``/proc/<pid>/stat``);
- prints each index's size afterwards (a partial index the INSERTs skip does not grow).
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import psycopg  # noqa: E402
from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402

from tests.services import PostgresServer  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def migrate(url: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "jobico_core" / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, revision)


def uuid7() -> str:
    return str(uuid.UUID(int=(time.time_ns() // 1_000_000 << 80) | uuid.uuid4().int & ((1 << 80) - 1)))


def hex_id(expr: str) -> str:
    """A UUID-shaped id from an integer SQL expression (PostgreSQL)."""
    return f"lpad(to_hex({expr}), 8, '0') || '-0000-7000-8000-' || lpad(to_hex({expr}), 12, '0')"


POPULATE = f"""
INSERT INTO executions (id, tenant_id, package, version, version_id, event, queue, status, payload, stdout,
  attempts, dead_lettered, chained_from, chain_depth, trigger, created_at, seq, finished_at, resubmitted_from,
  started_at, lease_until, worker)
SELECT {hex_id('g')}, 't' || (abs(hashtext(g::text)) % 20), 'pkg' || (abs(hashtext('p' || g)) % 10), 1, 1,
  'ev' || (g % 3), 'q',
  CASE WHEN g % 100 = 0 THEN 'queued' WHEN g % 100 = 1 THEN 'running' WHEN g % 20 = 2 THEN 'failed'
       ELSE 'succeeded' END,
  '{{"x":1}}', '', 1, false, CASE WHEN g % 50 = 7 THEN {hex_id('g - 1')} END, 0, 'webhook',
  now() - make_interval(secs => NPOP - g), CASE WHEN g % 100 > 1 THEN g END,
  CASE WHEN g % 100 > 1 THEN timestamptz '2026-12-01' END,
  CASE WHEN g % 500 = 9 THEN {hex_id('g - 2')} END, CASE WHEN g % 100 = 1 THEN now() END,
  CASE WHEN g % 100 = 1 THEN now() + interval '60 s' END, CASE WHEN g % 100 = 1 THEN 'w1' END
FROM generate_series(1, NPOP) g
"""
CHAINED, CHAINED_2, RESUBMITTED = "00000006-0000-7000-8000-000000000006", \
    "00000038-0000-7000-8000-000000000038", "00000007-0000-7000-8000-000000000007"
QUERIES = {  # the shape of each query of jobico_core / jobico_worker that filters executions
    "listing per tenant": "SELECT * FROM executions WHERE tenant_id = 't1' ORDER BY id DESC LIMIT 51",
    "listing per tenant and package":
        "SELECT * FROM executions WHERE tenant_id = 't1' AND package = 'pkg3' ORDER BY id DESC LIMIT 51",
    "listing per tenant, status failed":
        "SELECT * FROM executions WHERE tenant_id = 't1' AND status = 'failed' ORDER BY id DESC LIMIT 51",
    "listing per tenant, status queued":
        "SELECT * FROM executions WHERE tenant_id = 't1' AND status = 'queued' ORDER BY id DESC LIMIT 51",
    "running per tenant": "SELECT id FROM executions WHERE tenant_id = 't1' AND status = 'running'",
    "stream catch-up (seq > x)": "SELECT * FROM executions WHERE tenant_id = 't1' AND seq IS NOT NULL "
                                 "AND seq > 199000 ORDER BY seq LIMIT 500",
    "stream reference (seq = x)": "SELECT finished_at FROM executions WHERE tenant_id = 't1' AND seq = 199001",
    "stream lookback": "SELECT * FROM executions WHERE tenant_id = 't1' AND seq IS NOT NULL AND seq < 199001 "
                       "AND seq > 179001 AND finished_at >= timestamptz '2026-12-01' - interval '5 s' "
                       "ORDER BY seq LIMIT 500",
    "stream recent (seq desc)": "SELECT * FROM executions WHERE tenant_id = 't1' AND seq IS NOT NULL "
                                "ORDER BY seq DESC LIMIT 20",
    "last_seq": "SELECT max(seq) FROM executions WHERE tenant_id = 't1' AND seq IS NOT NULL",
    "chain of an execution": f"SELECT id FROM executions WHERE chained_from = '{CHAINED}' ORDER BY id",
    "queued child (executor)": f"SELECT * FROM executions WHERE chained_from = '{CHAINED}' AND status = 'queued'",
    "queued children (batch)": f"SELECT * FROM executions WHERE chained_from IN ('{CHAINED}', '{CHAINED_2}') "
                               "AND status = 'queued'",
    "resubmissions": f"SELECT id FROM executions WHERE resubmitted_from = '{RESUBMITTED}' ORDER BY id",
    "lease recovery": "SELECT id FROM executions WHERE status = 'running' AND (lease_until < now() "
                      "OR started_at < now() - interval '60 s') ORDER BY id LIMIT 100",
    "rescue": "SELECT * FROM executions WHERE status = 'queued' AND dead_lettered = false "
              "AND created_at < now() - interval '60 s' ORDER BY id LIMIT 100",
}
INSERT = """INSERT INTO executions (id, tenant_id, package, version, version_id, event, queue, status, payload,
  stdout, attempts, dead_lettered, chain_depth, trigger, created_at, submitter)
SELECT u.id, 't1', 'pkg1', 1, 1, 'ev1', 'q', 'queued', u.payload, '', 0, false, 0, 'webhook', now(), 'hook'
FROM unnest(%s::varchar[], %s::text[]) AS u(id, payload)"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rows_100() -> tuple[list[str], list[str]]:
    return [uuid7() for _ in range(100)], [f'{{"n":{k},"s":"{"x" * 200}"}}' for k in range(100)]


def sqlite_plans(revisions: dict[str, str]) -> None:
    d = tempfile.mkdtemp()
    for name, revision in revisions.items():
        path = f"{d}/{name}.db"
        migrate(f"sqlite:///{path}", revision)
        c = sqlite3.connect(path)
        c.execute("WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 20000) "
                  "INSERT INTO executions (id, tenant_id, package, version, version_id, event, queue, status, "
                  "payload, stdout, attempts, dead_lettered, chain_depth, trigger, created_at, seq, chained_from, "
                  "resubmitted_from) SELECT printf('%08x-0000-7000-8000-%012x', n, n), 't' || (n % 20), "
                  "'pkg' || (n % 10), 1, 1, 'ev', 'q', CASE WHEN n % 100 = 0 THEN 'queued' "
                  "WHEN n % 100 = 1 THEN 'running' ELSE 'succeeded' END, '{}', '', 1, 0, 0, 'webhook', "
                  "'2026-01-01', CASE WHEN n % 100 > 1 THEN n END, "
                  "CASE WHEN n % 50 = 7 THEN printf('%08x-0000-7000-8000-%012x', n - 1, n - 1) END, "
                  "CASE WHEN n % 500 = 9 THEN printf('%08x-0000-7000-8000-%012x', n - 2, n - 2) END FROM g")
        c.commit()
        c.execute("ANALYZE")
        for label, sql in QUERIES.items():
            sql = (sql.replace("now() - interval '60 s'", "'2026-01-02'")
                   .replace("timestamptz '2026-12-01' - interval '5 s'", "'2026'")
                   .replace("now()", "'2026-01-02'").replace("= false", "= 0"))
            print(f"sqlite {name} | {label}: " + "; ".join(r[3] for r in c.execute("EXPLAIN QUERY PLAN " + sql)))
        c.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=500, help="100-row INSERTs per schema and kind (default 500)")
    ap.add_argument("--population", type=int, default=200_000, help="executions before the INSERTs")
    ap.add_argument("--before", default="0010", help="the first schema's alembic revision (default 0010)")
    ap.add_argument("--after", default="head", help="the second schema's alembic revision (default head)")
    ap.add_argument("--no-plans", action="store_true", help="only the INSERT timings")
    args = ap.parse_args()
    revisions = {"before": args.before, "after": args.after}
    pg = PostgresServer()
    pg.start()
    try:
        admin = pg.url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(admin, autocommit=True) as c:
            for name in revisions:
                c.execute(f"CREATE DATABASE {name}")
        urls = {}
        for name, revision in revisions.items():
            url = pg.url.rsplit("/", 1)[0] + "/" + name
            migrate(url, revision)
            urls[name] = url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(urls[name], autocommit=True) as c:
                c.execute(POPULATE.replace("NPOP", str(int(args.population))))
                c.execute("SET default_statistics_target = 10000")  # a full sample: plans not left to chance
                c.execute("VACUUM ANALYZE executions")
        if not args.no_plans:
            for label, sql in QUERIES.items():
                print(f"=== {label}: {sql}")
                for name, url in urls.items():
                    with psycopg.connect(url, autocommit=True) as c:
                        plan = c.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + sql).fetchall()
                    print(f"--- {name} ({revisions[name]})\n" + "\n".join(r[0] for r in plan))
        explain = {n: psycopg.connect(u, autocommit=True) for n, u in urls.items()}
        plain = {n: psycopg.connect(u, autocommit=True) for n, u in urls.items()}
        pids = {n: c.execute("SELECT pg_backend_pid()").fetchone()[0] for n, c in plain.items()}
        exec_ms: dict[str, list[float]] = {n: [] for n in urls}
        hits: dict[str, list[int]] = {n: [] for n in urls}
        wall_ms: dict[str, list[float]] = {n: [] for n in urls}
        cpu: dict[str, float] = dict.fromkeys(urls, 0.0)
        for i in range(args.reps):
            for name in (("before", "after") if i % 2 == 0 else ("after", "before")):
                r = explain[name].execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + INSERT, rows_100()).fetchone()
                exec_ms[name].append(r[0][0]["Execution Time"])
                hits[name].append(r[0][0]["Plan"]["Shared Hit Blocks"])
                params = rows_100()
                c0, t0 = cpu_seconds(pids[name]), time.perf_counter()
                plain[name].execute(INSERT, params)
                wall_ms[name].append((time.perf_counter() - t0) * 1000)
                cpu[name] += cpu_seconds(pids[name]) - c0
        for name in urls:
            print(f"{name} ({revisions[name]}): 100-row INSERT x {args.reps}: server execution time median "
                  f"{statistics.median(exec_ms[name]):.3f} ms, shared buffer hits median "
                  f"{statistics.median(hits[name])}, "
                  f"server process CPU {cpu[name] / args.reps * 1000:.3f} ms per INSERT, "
                  f"client wall median {statistics.median(wall_ms[name]):.3f} ms")
        for name, url in urls.items():
            with psycopg.connect(url, autocommit=True) as c:
                sizes = c.execute("SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
                                  "WHERE relname = 'executions' ORDER BY 1").fetchall()
            print(f"{name} index bytes: " + ", ".join(f"{ix} {size}" for ix, size in sizes))
        for c in (*explain.values(), *plain.values()):
            c.close()
    finally:
        pg.stop()
    if not args.no_plans:
        sqlite_plans(revisions)


if __name__ == "__main__":
    main()
