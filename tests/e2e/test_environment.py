"""Environment and secrets end to end: real API, Celery worker, PostgreSQL, Redis, S3 and WASM.

``envecho.wasm`` returns, logs and prints its whole WASI environment: the secret must reach
it, and must appear in no API answer, CLI output, worker log line or database row.
"""
from __future__ import annotations

import json

import redis
from sqlalchemy import text
from typer.testing import CliRunner

from jobico_cli.main import app as cli_app
from jobico_core.db import Base

from .helpers import example

SECRET = "s3cr3t-Tok3n-0f-the-tenant-7f1c"
ROTATED = "r0tated-Tok3n-5d2e9a"
PLAIN_V1, PLAIN_V2 = "endpoint-one.example", "endpoint-two.example"

ENV_YAML = """
id: envpkg
environment:
  LOG_LEVEL: debug
  API_TOKEN: {secret: api-token}
queues: [{id: q}]
jobs:
  - event:
      id: show
      schema: {id: s, schemaref: any.json}
      supplierqueue: q
      runtime: envecho
      environment: {ENDPOINT: {secret: endpoint}, LOG_LEVEL: info}
    result:
      ok: {id: show_done, schema: {id: r, schemaref: any.json}, supplierqueue: q, runtime: echo}
  - event: {id: plainecho, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: echo}
runtimes:
  - {id: envecho, moduleref: envecho.wasm}
  - {id: echo, moduleref: echo.wasm}
"""


def _cli(p, key, *args, stdin=None):
    res = CliRunner().invoke(cli_app, list(args), input=stdin,
                             env={"JOBICO_API_URL": p.url, "JOBICO_TOKEN": key, "COLUMNS": "200",
                                  "JOBICO_HOME": str(p.tmp / "clihome")})
    assert res.exit_code == 0, res.output
    return res.output


def _dump_database(p) -> str:
    out = []
    with p.ctx.db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(text(f'SELECT * FROM "{table.name}"')):
                out.append(repr(tuple(row)))
    return "\n".join(out)


def test_a_secret_reaches_the_guest_and_nothing_else_and_rotates_without_redeploy(platform):
    p = platform
    key = p.tenant("envt")
    for f in ("jobicolets/envecho.wasm", "jobicolets/echo.wasm", "schemas/any.json"):
        p.upload(key, example(f))
    # deploying before the secret exists names the missing reference
    r = p.call(key, "POST", "/api/v1/packages", data=ENV_YAML.encode(), headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422, r.text
    paths = {e["path"] for e in r.json()["errors"]["package"]}
    assert paths == {"environment.API_TOKEN.secret", "events.show.environment.ENDPOINT.secret"}, r.text
    # set them: the secret through the CLI's stdin (never an argument), the plain one through the API
    out = _cli(p, key, "env", "set", "api-token", "--secret", stdin=SECRET + "\n")
    assert SECRET not in out and "api-token" in out
    r = p.call(key, "PUT", "/api/v1/environment/endpoint", json={"value": PLAIN_V1, "secret": False})
    assert r.status_code == 200 and r.json()["value"] == PLAIN_V1
    p.deploy(key, ENV_YAML)

    sub = redis.Redis.from_url(p.settings.redis_url).pubsub()
    sub.subscribe("jobico:tenant:envt:executions")
    p.start_worker()
    [eid] = p.post(key, "envt", "show", [{}]).json()["executions"]
    e = p.wait(key, eid)
    assert e["status"] == "succeeded", e
    expected = f"LOG_LEVEL=info;API_TOKEN=***;ENDPOINT={PLAIN_V1};"
    assert sorted(e["result"].split(";")) == sorted(expected.split(";")), e   # the guest got all three
    assert e["stdout"] == e["result"] and e["logs"] == [{"level": 1, "message": e["result"]}]
    child = p.wait(key, e["chain"][0])                 # the chained payload carries the masked result
    assert child["status"] == "succeeded" and SECRET not in json.dumps(child)
    # a module of the same package without WASI imports: runs, and cannot see anything
    [plain] = p.post(key, "envt", "plainecho", [{"x": 1}]).json()["executions"]
    assert p.wait(key, plain)["result"] == '{"x":1}'

    # rotation, no redeploy: the next execution gets the new values (a secret is then masked whole:
    # the guest had the new value, or the old one would show)
    _cli(p, key, "env", "set", "api-token", ROTATED, "--secret")
    assert p.call(key, "PUT", "/api/v1/environment/endpoint", json={"value": PLAIN_V2, "secret": False}).ok
    [eid2] = p.post(key, "envt", "show", [{}]).json()["executions"]
    e2 = p.wait(key, eid2)
    assert f"ENDPOINT={PLAIN_V2}" in e2["result"] and "API_TOKEN=***" in e2["result"], e2
    assert e2["version"] == e["version"] == 1

    # masked in every answer, the CLI's listing included
    listing = p.call(key, "GET", "/api/v1/environment").json()["items"]
    by_name = {v["name"]: v for v in listing}
    assert by_name["api-token"]["value"] == "***" and by_name["api-token"]["secret"] is True
    assert by_name["api-token"]["updated_at"] and by_name["api-token"]["key_id"]
    answers = [json.dumps(listing), _cli(p, key, "env", "list"), _cli(p, key, "env", "list", "--json"),
               p.call(key, "GET", "/api/v1/packages/envpkg").text,
               p.call(key, "GET", "/api/v1/executions", params={"limit": 50}).text,
               _cli(p, key, "executions", "show", eid), _cli(p, key, "executions", "show", eid2)]
    streamed = []
    while (m := sub.get_message(timeout=0.5)) is not None:
        streamed.append(str(m.get("data")))
    assert any(eid in s for s in streamed)
    answers += streamed
    for w in p.workers:
        w.stop()
    answers.append(_dump_database(p))
    answers += [w.log_path.read_text(errors="replace") for w in p.workers]
    for value in (SECRET, ROTATED):
        for i, answer in enumerate(answers):
            assert value not in answer, f"secret leaked in answer #{i}: {answer[:2000]}"
    # sealed at rest, plain variables too: the rows name the key they were sealed with
    with p.ctx.db.engine.connect() as conn:
        rows = conn.execute(text("SELECT name, sealed, key_id FROM env_variables ORDER BY name")).all()
    assert [r[0] for r in rows] == ["api-token", "endpoint"]
    assert all(r[1].startswith(f"v1:{r[2]}:") and PLAIN_V2 not in r[1] for r in rows)


def test_removing_a_referenced_secret_cancels_with_a_message(platform):
    p = platform
    key = p.tenant("envu")
    for f in ("jobicolets/envecho.wasm", "jobicolets/echo.wasm", "schemas/any.json"):
        p.upload(key, example(f))
    for name in ("api-token", "endpoint"):
        assert p.call(key, "PUT", f"/api/v1/environment/{name}", json={"value": "v", "secret": True}).ok
    p.deploy(key, ENV_YAML)
    assert p.call(key, "DELETE", "/api/v1/environment/endpoint").status_code == 204
    assert p.call(key, "DELETE", "/api/v1/environment/endpoint").status_code == 404
    p.start_worker(concurrency=1)
    [eid] = p.post(key, "envu", "show", [{}]).json()["executions"]
    e = p.wait(key, eid)
    assert e["status"] == "cancelled" and "secret 'endpoint' is not set" in e["message"], e
