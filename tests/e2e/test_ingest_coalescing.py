"""Coalesced single-event webhook requests (issue 19) end to end: real worker, real WASM.

Requests sent together are recorded by one statement and carried by fewer tasks than
events, yet every event reaches its own terminal state: its own result and chained event,
its own retries and dead letter, its own Idempotency-Key."""
from __future__ import annotations

import threading

import requests

from .helpers import example

YAML = (example("packages/hello.yaml")).read_text().replace("tenant: demo\n", "tenant: t\n") + """\
  - id: error
    moduleref: error.wasm
"""
YAML = YAML.replace("jobs:\n", """jobs:
  - event: {id: doomed, schema: {id: s, schemaref: any.json}, supplierqueue: main, runtime: error, retries: 1}
""", 1)


def _together(p, key: str, sends: list[tuple[str, dict, dict]]) -> list[requests.Response]:
    """POST every (event, element, extra headers) at once, one thread and connection each."""
    out: list = [None] * len(sends)
    start = threading.Barrier(len(sends))

    def send(i: int, event: str, element: dict, headers: dict) -> None:
        start.wait()
        out[i] = p.call(key, "POST", f"/events/t/{event}", json={"data": [element]}, headers=headers)

    threads = [threading.Thread(target=send, args=(i, *s)) for i, s in enumerate(sends)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(r is not None for r in out)
    return out


def test_coalesced_events_each_reach_their_own_end(platform):
    p = platform
    # this platform's API lingers up to 1 s for requests being checked (JOBICO_INGEST_LINGER_MS)
    p.ctx.settings = p.ctx.settings.replace(ingest_linger_ms=1000)
    key = p.tenant("t")
    for f in ("jobicolets/greet.wasm", "jobicolets/echo.wasm", "jobicolets/error.wasm", "schemas/hello.json",
              "schemas/result.json", "schemas/any.json"):
        p.upload(key, example(f))
    p.deploy(key, YAML)
    p.ctx.fresh_webhook_cache()  # the deploy's routing change seen: no request is admitted twice
    names = [f"n{i}" for i in range(8)]
    sends = [("hello", {"name": n}, {}) for n in names]
    sends += [("doomed", {"i": i}, {}) for i in range(4)]
    sends += [("hello", {"name": "Once"}, {"Idempotency-Key": "once"}) for _ in range(3)]
    rs = _together(p, key, sends)
    assert [r.status_code for r in rs] == [200] * len(sends), [r.text for r in rs]
    ids = [r.json()["executions"][0] for r in rs]
    batches = p.ctx.ingest_batches
    assert batches.flushes < batches.callers == len(sends) - 2  # coalesced (the key's repeats only waited)
    once = set(ids[-3:])
    assert len(once) == 1  # one execution for the key, every repeat answered with it
    assert len(set(ids)) == len(names) + 4 + 1

    p.start_worker()
    for n, eid in zip(names, ids):  # each its own result and its own chained event
        e = p.wait(key, eid)
        assert (e["status"], e["result"], e["attempts"], e["dead_lettered"]) == (
            "succeeded", f"Hello, {n}!", 1, False), e
        (child,) = e["chain"]
        c = p.wait(key, child)
        assert (c["event"], c["chained_from"], c["status"]) == ("hello_done", eid, "succeeded")
    e = p.wait(key, ids[-1])
    assert (e["status"], e["result"]) == ("succeeded", "Hello, Once!")
    for eid in ids[len(names):len(names) + 4]:  # each retried once, then dead-lettered, alone
        e = p.wait(key, eid, timeout=90, until=lambda e: e["dead_lettered"])
        assert (e["status"], e["code"], e["attempts"], e["dead_lettered"]) == ("failed", 3, 2, True), e
