"""The ingest floor plus the one write the webhook's guarantee needs: bare Flask, one INSERT.

``POST /events/<tenant>/<event>`` as in ``bench/bare_app.py`` (json.loads, one LPUSH of the
elements), and before the LPUSH one autocommitted ``INSERT ... SELECT FROM unnest`` of the
elements into ``floor_rows`` (id, tenant, payload; a primary key and one more index) over a
psycopg connection per thread, the ids and payloads sent as two array literals (the cheapest
way found for the webhook's own INSERT too). No auth, no validation, no admission, no coalescing: what a
webhook that stores its events before publishing them could at best do per request
(``bench/durable_floor.py``).
"""
from __future__ import annotations

import os
import threading
import uuid

import psycopg
from flask import Flask, jsonify

from bench.bare_app import elements, redis_client

app = Flask("bare-durable")
_local = threading.local()
TABLE = """CREATE TABLE IF NOT EXISTS floor_rows (id text PRIMARY KEY, tenant text NOT NULL,
    payload text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX IF NOT EXISTS floor_rows_tenant ON floor_rows (tenant, id)"""


def database_url(env=os.environ) -> str:
    return env["JOBICO_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")


def _pg() -> psycopg.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = psycopg.connect(database_url(), autocommit=True)
    return conn


def _array(texts: list[str]) -> str:
    """A PostgreSQL text array literal, built by C-level joins (psycopg adapts a list element
    by element in Python, several us per element)."""
    return '{"' + '","'.join(t.replace("\\", "\\\\").replace('"', '\\"') for t in texts) + '"}'


@app.post("/events/<tenant>/<event>")
def events(tenant, event):
    texts = elements()
    ids = [str(uuid.uuid4()) for _ in texts]
    _pg().execute("INSERT INTO floor_rows (id, tenant, payload) SELECT i, %s, p FROM unnest(%s::text[], %s::text[]) "
                  "AS t(i, p)", (tenant, _array(ids), _array(texts)))
    redis_client().lpush(f"bare.{tenant}.{event}", *texts)
    return jsonify(accepted=len(texts))
