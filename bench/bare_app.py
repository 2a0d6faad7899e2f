"""The ingest floor: a bare Flask endpoint under the same gunicorn settings.

``POST /events/<tenant>/<event>`` parses the JSON body, checks it has a
``data`` array, LPUSHes every element (one command) with a pooled Redis
connection and answers 200 with the element count. No auth, no database,
no validation: what the webhook could at best do per request.
``gunicorn -c jobico_api/gunicorn_conf.py bench.bare_app:app``
"""
from __future__ import annotations

import json
import os

import redis
from flask import Flask, abort, jsonify, request

app = Flask("bare")
_clients: dict[int, redis.Redis] = {}


def redis_client() -> redis.Redis:
    pid = os.getpid()  # gunicorn forks: one pool per worker process
    client = _clients.get(pid)
    if client is None:
        client = _clients[pid] = redis.Redis.from_url(os.environ["JOBICO_REDIS_URL"])
    return client


def elements() -> list[str]:
    """The request's ``data`` elements as compact JSON (400 when there is no such array)."""
    doc = json.loads(request.get_data())
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list) or not data:
        abort(400)
    return [json.dumps(el, separators=(",", ":")) for el in data]


@app.get("/health")
def health():
    return {"status": "ok"}


@app.post("/events/<tenant>/<event>")
def events(tenant, event):
    texts = elements()
    redis_client().lpush(f"bare.{tenant}.{event}", *texts)
    return jsonify(accepted=len(texts))
