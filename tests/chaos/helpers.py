"""Chaos harness: the real platform on PRIVATE servers that the tests kill, stop and freeze.

The session servers of ``tests/conftest.py`` are never touched. This suite
starts its own (once per session, shared by the scenarios, each of which
restores what it broke in a ``finally``):

* ``chaos_redis``: redis-server with ``appendonly yes`` + ``appendfsync always``
  (every acknowledged LPUSH is on disk before the webhook answers 200);
* ``chaos_pg``: a PostgreSQL the tests stop, restart, SIGSTOP and SIGCONT;
* ``chaos_s3``: a ``weed mini`` the S3 scenario stops and restarts.

``chaos`` gives each test a fresh database, Redis DB number and bucket, the
API in a thread (the e2e harness's ``Platform``) and real Celery worker
subprocesses, with small maxima so recovery happens in seconds:
``JOBICO_VISIBILITY_TIMEOUT=5`` and ``JOBICO_MAX_TIMEOUT_MS=2500`` (the
smallest pair ``Settings.check`` accepts: visibility >= 2 x the maximum).

Each scenario reports ``sent / accepted / executed / recorded / duplicates /
lost`` through ``report``; the table is printed at the end of the session.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from jobico_core.db import TERMINAL_STATUSES, Execution
from tests.e2e.helpers import Platform, example, platform_env
from tests.services import S3Server
from tests.waiting import wait_until

HERE = Path(__file__).resolve().parent
VISIBILITY = 5          # seconds
MAX_TIMEOUT_MS = 2500   # platform maximum execution time (and the default)

CHAOS_YAML = """
id: chaos
queues: [{id: q}]
jobs:
  - event: {id: spin, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: spin}
    result:
      ok:    {id: spin_ok,  schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: echo}
      error: {id: spin_err, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: echo}
  - event: {id: sleep, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: sleeper}
  - event: {id: fast, schema: {id: s, schemaref: any.json}, supplierqueue: q, runtime: echo}
runtimes:
  - {id: spin, moduleref: spin.wasm}
  - {id: echo, moduleref: echo.wasm}
  - {id: sleeper, moduleref: sleeper.wasm}
"""

RESULTS: list[dict] = []


# ---------------------------------------------------------------------------
# private servers
# ---------------------------------------------------------------------------


DB_NUMBERS = itertools.count(1)


# ---------------------------------------------------------------------------
# the platform
# ---------------------------------------------------------------------------


class Chaos(Platform):
    """The e2e ``Platform`` plus a tenant with the chaos package, and counting."""

    key: str = ""
    tenant_id: str = "t"

    def setup_tenant(self, spin_wasm: Path, tenant: str = "t") -> str:
        key = self.tenant(tenant)
        self.upload(key, spin_wasm)
        for f in ("jobicolets/echo.wasm", "jobicolets/sleeper.wasm", "schemas/any.json"):
            self.upload(key, example(f))
        self.deploy(key, CHAOS_YAML)
        if tenant == "t":
            self.key = key
        return key

    def db_rows(self, ids) -> dict[str, Execution]:
        ids = list(ids)
        out: dict[str, Execution] = {}
        with self.ctx.db.session() as s:
            for i in range(0, len(ids), 1000):
                for row in s.scalars(select(Execution).where(Execution.id.in_(ids[i:i + 1000]))):
                    out[row.id] = row
        return out

    def children(self, ids) -> dict[str, int]:
        ids = list(ids)
        out: dict[str, int] = {}
        with self.ctx.db.session() as s:
            for i in range(0, len(ids), 1000):
                q = (select(Execution.chained_from, func.count()).where(Execution.chained_from.in_(ids[i:i + 1000]))
                     .group_by(Execution.chained_from))
                out.update({k: v for k, v in s.execute(q)})
        return out

    def wait_all(self, ids, timeout: float, chained: bool = True) -> None:
        """Until every id is recorded (and, with ``chained``, its chained execution too); at the
        deadline it returns all the same: the caller's tally says what is missing."""
        ids = list(ids)
        with contextlib.suppress(AssertionError):
            wait_until(lambda: self._all_recorded(ids, chained), timeout, interval=0.25,
                       ignore=(Exception,))  # the database may be coming back

    def _all_recorded(self, ids: list[str], chained: bool) -> bool:
        rows = self.db_rows(ids)
        if not all(i in rows and rows[i].status in TERMINAL_STATUSES for i in ids):
            return False
        if not chained:
            return True
        kids = self.children(ids)
        return all(kids.get(i) for i in ids) and all(
            r.status in TERMINAL_STATUSES for r in self.db_rows(self._child_ids(ids)).values())

    def _child_ids(self, ids) -> list[str]:
        ids = list(ids)
        out = []
        with self.ctx.db.session() as s:
            for i in range(0, len(ids), 1000):
                out += list(s.scalars(select(Execution.id).where(Execution.chained_from.in_(ids[i:i + 1000]))))
        return out

    def tally(self, scenario: str, sent: int, accepted: list[str], chained: bool = True, **notes) -> dict:
        """Counts for the report; asserts nothing (the test does)."""
        rows = self.db_rows(accepted)
        kids = self.children(accepted) if chained else {}
        kid_rows = self.db_rows(self._child_ids(accepted)) if chained else {}
        recorded = [i for i in accepted if i in rows and rows[i].status in TERMINAL_STATUSES]
        lost = [i for i in accepted if i not in recorded or (chained and not kids.get(i))]
        lost += [k for k, r in kid_rows.items() if r.status not in TERMINAL_STATUSES]
        duplicates = sum(n - 1 for n in kids.values() if n > 1)
        result = {
            "scenario": scenario, "sent": sent, "accepted": len(accepted),
            "executed": sum(1 for i in recorded if rows[i].attempts >= 1),
            "recorded": len(recorded), "duplicates": duplicates, "lost": len(lost),
            "runs": sum(rows[i].attempts for i in recorded),
            "notes": ", ".join(f"{k}={v}" for k, v in notes.items()),
            "lost_ids": lost[:10],
            "statuses": sorted({rows[i].status for i in recorded}),
        }
        RESULTS.append(result)
        print(json.dumps(result))
        return result


class Sender:
    """Posts one event at a time from a thread until stopped; keeps every answer."""

    def __init__(self, p: Chaos, event: str = "spin", pad: int = 10, timeout: float = 30.0, interval: float = 0.05):
        self.p, self.event, self.pad, self.timeout, self.interval = p, event, pad, timeout, interval
        self.sent = 0
        self.accepted: list[str] = []
        self.codes: dict[int, int] = {}
        self.latencies: list[tuple[int, float]] = []
        self.started: list[float] = []  # monotonic start of each request, parallel to latencies
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import requests
        while not self._stop.is_set():
            self.sent += 1
            t0 = time.monotonic()
            try:
                r = requests.post(f"{self.p.url}/events/{self.p.tenant_id}/{self.event}",
                                  json={"data": [{"pad": "x" * self.pad, "n": self.sent}]},
                                  headers={"Authorization": f"Bearer {self.p.key}"}, timeout=self.timeout)
                code = r.status_code
                if code == 200:
                    self.accepted += r.json()["executions"]
                elif code == 503:
                    assert r.headers.get("Retry-After"), r.headers
            except Exception:  # noqa: BLE001 - a timeout/reset is "not accepted"
                code = -1
            self.codes[code] = self.codes.get(code, 0) + 1
            self.started.append(t0)
            self.latencies.append((code, time.monotonic() - t0))
            time.sleep(self.interval)

    def __enter__(self) -> Sender:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)

    def between(self, t0: float, t1: float) -> list[tuple[int, float]]:
        """(code, seconds) of the requests started in [t0, t1]."""
        return [lat for st, lat in zip(self.started, self.latencies) if t0 <= st <= t1]


def chaos_env(pg_url: str, redis_url: str, s3: S3Server, bucket: str, tmp: Path) -> dict[str, str]:
    """The e2e platform's environment with small maxima, so recovery takes seconds."""
    return platform_env(pg_url, redis_url, s3, bucket, tmp,
                        JOBICO_VISIBILITY_TIMEOUT=str(VISIBILITY), JOBICO_MAX_TIMEOUT_MS=str(MAX_TIMEOUT_MS),
                        JOBICO_LIMIT_TIMEOUT_MS=str(MAX_TIMEOUT_MS), JOBICO_LIMIT_FUEL="10000000000",
                        JOBICO_TASK_RETRIES="30", JOBICO_RATE_LIMIT="100000", JOBICO_RATE_BURST="100000",
                        JOBICO_RESCUE_AFTER="10")


