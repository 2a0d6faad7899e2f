"""Scenario 4: the object store (S3) stopped.

A module the worker already ran is in its local cache (compiled in memory and
on disk under JOBICO_CACHE_DIR): its events keep running. A module it never
fetched cannot be read: the fetch is retried with backoff (an infrastructure
error) and the execution completes once S3 is back.
"""
from __future__ import annotations

import time

from .helpers import example

COLD_YAML = """
id: cold
queues: [{id: q}]
jobs:
  - event: {id: cold, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: err}
runtimes:
  - {id: err, moduleref: error.wasm}
"""


def test_s3_stopped(chaos, chaos_s3):
    p = chaos
    p.upload(p.key, example("jobicolets/error.wasm"))
    p.deploy(p.key, COLD_YAML)
    p.start_worker("w1", concurrency=2)
    warm = p.post(p.key, "t", "spin", [{"pad": "x"}]).json()["executions"]
    p.wait_all(warm, timeout=60)  # spin.wasm and echo.wasm are now cached by the worker

    chaos_s3._stop(15)
    try:
        t0 = time.monotonic()
        cached = p.post(p.key, "t", "spin", [{"pad": "x", "i": i} for i in range(10)])
        assert cached.status_code == 200, cached.text
        cached = cached.json()["executions"]
        cold = p.post(p.key, "t", "cold", [{"i": i} for i in range(3)])
        assert cold.status_code == 200, cold.text  # the webhook needs no S3 (schema cached)
        cold = cold.json()["executions"]
        p.wait_all(cached, timeout=60)
        cached_s = time.monotonic() - t0
        time.sleep(8)  # long enough for more claims than JOBICO_MAX_ATTEMPTS: infra retries are not crashes
        rows = p.db_rows(cold)
        assert all(r.status in ("queued", "running") for r in rows.values()), \
            {i: (r.status, r.message) for i, r in rows.items()}  # waiting on S3, not failed
        outage = time.monotonic() - t0
    finally:
        chaos_s3.restart()
    p.wait_all(cold, timeout=90, chained=False)
    res_cached = p.tally("4 S3 stopped: cached module", 10, cached, cached_while_down_s=round(cached_s, 1))
    res_cold = p.tally("4 S3 stopped: uncached module", 3, cold, chained=False, s3_down_s=round(outage, 1))
    assert res_cached["recorded"] == 10 and res_cached["lost"] == 0 and res_cached["duplicates"] == 0
    assert res_cold["recorded"] == 3 and res_cold["lost"] == 0, res_cold
    assert res_cold["statuses"] == ["failed"]  # error.wasm's own outcome (code 3), not an infra failure
