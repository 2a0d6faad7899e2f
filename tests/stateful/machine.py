"""A hypothesis ``RuleBasedStateMachine`` over the real platform (``platform.py``), with a model
of what should exist (``model.py``).

Rules: tenants created, deleted and re-created under the same id; keys created and revoked;
modules and schemas uploaded and replaced; packages deployed, redeployed, rolled back and
deleted; events sent (with the tenant's key, another tenant's, a revoked one), resubmitted,
retried (dead letters), cancelled, fired by cron (beat); the stored variable set and unset; pool
processes killed and the worker restarted.

Checked after every step (``check_tenants``) and at the end of every sequence (``teardown``):
no 5xx; each tenant's executions, files, packages, environment and stream hold its own data and
nothing else; each execution ran the module of the version active when it was accepted; every
accepted execution is final within ``TERMINAL_S``; a deleted tenant, key or package is refused by
every API process at once and run by no pool process.
"""
from __future__ import annotations

import collections
import hashlib
import inspect
import itertools
import json
import os
import secrets
import sys
import time

import requests
from hypothesis import strategies as st
from hypothesis.errors import Frozen, StopTest
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from jobico_core.services.rescue import UNACKED_KEY
from tests.e2e.helpers import ADMIN
from tests.waiting import wait_until

from .model import (
    FINAL,
    Expected,
    Package,
    Tenant,
    Version,
    age,
    check_record,
    cron_version,
    event_id,
    make_module,
    schema_bytes,
)
from .platform import LEASE_S

TENANTS = ("ta", "tb", "tc")
PACKAGES = ("p1", "p2")
MODULE_FILES = ("m1.wasm", "m2.wasm")
KEY_NAMES = ("default", "k1", "k2")
# every accepted execution must be final this long after it was accepted
TERMINAL_S = float(os.environ.get("JOBICO_STATEFUL_TERMINAL_S", "45"))
# the slowest fate is a lost running execution's: its lease runs out and a recovery ends it
assert TERMINAL_S >= 1.5 * LEASE_S + 15, f"JOBICO_STATEFUL_TERMINAL_S below the lease's bound ({1.5 * LEASE_S:g} s)"
CRON_WAIT_S = 15.0  # a schedule firing every second fires within this
PROBES = 3  # requests (fresh connections: spread over the API processes) that check a refusal

# the steps of the last sequences as they ran (printed by the test on a failure: a platform's state
# outlives a sequence, e.g. a process's cache, so the sequence before the failing one may matter)
HISTORY: collections.deque[list[str]] = collections.deque(maxlen=3)
FIRST_FAILURE: list[str] = []  # the first failure seen (before shrinking), then the sequences that led to it
STATS = {"sequences": 0, "steps": 0, "executions": 0, "cron_fires": 0, "worker_restarts": 0, "pool_kills": 0}
_uniq = itertools.count(1)
RUN = secrets.token_hex(3)  # tags differ between runs too


class PlatformViolation(AssertionError):
    pass


class PlatformMachine(RuleBasedStateMachine):
    platform = None  # a StatefulPlatform, set by the test (tests/stateful/test_stateful.py)

    def __init__(self):
        super().__init__()
        STATS["sequences"] += 1
        HISTORY.append([])
        self.tenants: dict[str, Tenant] = {}
        self.dead_keys: list[tuple[str, str]] = []  # (tenant, secret) of revoked keys and deleted tenants
        self.steps = 0
        self.restarted = False
        self.kills = 0
        self.used: set[str] = set()  # tenant ids deleted during this sequence
        self.violations: list[str] = []
        for t in TENANTS:  # a sequence that failed half-way may have left its tenants behind
            self._http("DELETE", f"/api/v1/tenants/{t}", ADMIN)

    # -- HTTP ---------------------------------------------------------------------------------
    def _http(self, method: str, path: str, key: str | None, **kw) -> requests.Response:
        headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **kw.pop("headers", {})}
        r = requests.request(method, self.platform.url + path, headers=headers, timeout=60, **kw)
        if r.status_code >= 500:
            raise PlatformViolation(f"{method} {path} answered {r.status_code}: {r.text[:1000]}\n"
                                    f"{self.platform.logs()}")
        return r

    def _expect(self, r: requests.Response, *codes: int) -> dict:
        if r.status_code not in codes:
            raise PlatformViolation(f"{r.request.method} {r.request.path_url} answered {r.status_code} "
                                    f"(expected {codes}): {r.text[:1000]}")
        return r.json() if r.content else {}

    def _step(self) -> None:
        """Count a step and log it with its arguments (the calling rule's)."""
        self.steps += 1
        STATS["steps"] += 1
        frame = inspect.currentframe().f_back
        code = frame.f_code
        args = ", ".join(f"{a}={frame.f_locals[a]!r}" for a in code.co_varnames[1:code.co_argcount])
        HISTORY[-1].append(f"{time.strftime('%H:%M:%S')} {code.co_name}({args})")

    # -- tenants and keys --------------------------------------------------------------------
    @rule(t=st.sampled_from(TENANTS))
    def create_tenant(self, t):
        self._step()
        self._create_tenant(t)

    def _create_tenant(self, t: str) -> None:
        r = self._http("POST", "/api/v1/tenants", ADMIN, json={"id": t})
        if t in self.tenants:
            self._expect(r, 409)
            return
        doc = self._expect(r, 201)
        tenant = self.tenants[t] = Tenant(t, keys={doc["key_name"]: doc["key"]})
        # a re-created tenant starts empty
        for path in ("/api/v1/executions", "/api/v1/files", "/api/v1/packages", "/api/v1/environment"):
            items = self._expect(self._http("GET", path, doc["key"]), 200)["items"]
            if items:
                self._violation(f"tenant {t} created again: {path} is not empty: {items[:3]}")
        self._upload(tenant, "any.json", schema_bytes(0))

    @initialize(kinds=st.lists(st.sampled_from(["tagged", "echo", "envecho", "error"]), min_size=2, max_size=2))
    def two_tenants_with_a_package(self, kinds):
        """Every sequence starts with two tenants, each with a module and a package deployed."""
        self._step()
        for t, kind in zip(TENANTS, kinds):
            self._create_tenant(t)
            self._upload_module(self.tenants[t], MODULE_FILES[0], kind)
            self._deploy(self.tenants[t], PACKAGES[0], MODULE_FILES[0], False, 0)

    @precondition(lambda self: self.tenants)
    @rule(i=st.integers(0, 10))
    def delete_tenant(self, i):
        self._step()
        t = sorted(self.tenants)[i % len(self.tenants)]
        self._expect(self._http("DELETE", f"/api/v1/tenants/{t}", ADMIN), 204)
        tenant = self.tenants.pop(t)
        self.used.add(t)
        self.dead_keys += [(t, k) for k in tenant.keys.values()]
        self._expect(self._http("GET", f"/api/v1/tenants/{t}", ADMIN), 404)
        for k in tenant.keys.values():
            self._assert_key_refused(t, k, tenant)
        other = next((o for o in self.tenants.values() if o.key()), None)
        if other is not None:  # its executions are gone, not handed to anyone
            for eid in list(tenant.executions)[-PROBES:]:
                self._expect(self._http("GET", f"/api/v1/executions/{eid}", other.key()), 404)

    @precondition(lambda self: self.tenants)
    @rule(i=st.integers(0, 10), name=st.sampled_from(KEY_NAMES))
    def create_key(self, i, name):
        self._step()
        t = sorted(self.tenants)[i % len(self.tenants)]
        tenant = self.tenants[t]
        r = self._http("POST", f"/api/v1/tenants/{t}/keys", ADMIN, json={"name": name})
        if name in tenant.keys:
            self._expect(r, 409)
            return
        tenant.keys[name] = self._expect(r, 201)["key"]
        assert self._expect(self._http("GET", "/api/v1/whoami", tenant.keys[name]), 200)["tenant"] == t

    @precondition(lambda self: self.tenants)
    @rule(i=st.integers(0, 10), name=st.sampled_from(KEY_NAMES))
    def revoke_key(self, i, name):
        self._step()
        t = sorted(self.tenants)[i % len(self.tenants)]
        tenant = self.tenants[t]
        r = self._http("DELETE", f"/api/v1/tenants/{t}/keys/{name}", ADMIN)
        if name not in tenant.keys:
            self._expect(r, 404)
            return
        self._expect(r, 204)
        secret = tenant.keys.pop(name)
        self.dead_keys.append((t, secret))
        self._assert_key_refused(t, secret, tenant)

    def _assert_key_refused(self, t: str, secret: str, tenant: Tenant) -> None:
        """Every API process refuses a revoked key (control API and webhook) from now on."""
        for _ in range(PROBES):
            r = self._http("GET", "/api/v1/whoami", secret)
            assert r.status_code == 401, f"revoked key of {t} answered {r.status_code} on whoami: {r.text[:300]}"
            for pkg in tenant.packages:
                r = self._http("POST", f"/events/{t}/{event_id(pkg)}", secret, json={"data": [{"probe": 1}]})
                assert r.status_code in (401, 403, 404), \
                    f"revoked key of {t} answered {r.status_code} on the webhook: {r.text[:300]}"

    # -- files -------------------------------------------------------------------------------
    def _upload(self, tenant: Tenant, name: str, data: bytes) -> None:
        doc = self._expect(self._http("PUT", f"/api/v1/files/{name}", tenant.key(), data=data), 200, 201)
        assert doc["sha256"] == hashlib.sha256(data).hexdigest(), doc
        tenant.files[name] = doc["sha256"]

    def _tenant_with_key(self, i: int) -> Tenant | None:
        live = self._tenants_with_keys()
        return live[i % len(live)] if live else None

    @precondition(lambda self: any(t.keys for t in self.tenants.values()))
    @rule(i=st.integers(0, 10), name=st.sampled_from(MODULE_FILES),
          kind=st.sampled_from(["tagged", "tagged", "echo", "envecho", "error"]))
    def upload_module(self, i, name, kind):
        self._step()
        self._upload_module(self._tenant_with_key(i), name, kind)

    def _upload_module(self, tenant: Tenant, name: str, kind: str) -> None:
        module = make_module(kind, f"{tenant.id}-{RUN}-{next(_uniq)}")
        self._upload(tenant, name, module.data)
        tenant.modules[name] = module

    @precondition(lambda self: any(t.keys for t in self.tenants.values()))
    @rule(i=st.integers(0, 10), variant=st.integers(0, 2))
    def upload_schema(self, i, variant):
        self._step()
        self._upload(self._tenant_with_key(i), "any.json", schema_bytes(variant))

    # -- packages ----------------------------------------------------------------------------
    @precondition(lambda self: any(t.keys for t in self.tenants.values()))
    @rule(i=st.integers(0, 10), pkg=st.sampled_from(PACKAGES), name=st.sampled_from(MODULE_FILES),
          sv_ref=st.booleans(), retries=st.sampled_from([0, 0, 1]), cron=st.sampled_from([False, False, True]))
    def deploy(self, i, pkg, name, sv_ref, retries, cron):
        """Deploy or redeploy; ``cron``: its event also fires every second (beat)."""
        self._step()
        self._deploy(self._tenant_with_key(i), pkg, name, sv_ref, retries, cron)

    def _deploy(self, tenant: Tenant, pkg: str, name: str, sv_ref: bool, retries: int, cron: bool = False) -> None:
        package = tenant.packages.get(pkg)
        number = max(package.versions) + 1 if package else 1
        tag = f"{tenant.id}/{pkg}/{number}/{RUN}-{next(_uniq)}"
        module = tenant.modules.get(name)
        version = Version(number, module, tag, sv_ref, retries, cron)
        headers = {"Content-Type": "application/yaml"}
        body = version.yaml(pkg, name).encode()
        if package:
            r = self._http("PUT", f"/api/v1/packages/{pkg}", tenant.key(), data=body, headers=headers)
        else:
            r = self._http("POST", "/api/v1/packages", tenant.key(), data=body, headers=headers)
        if module is None or (sv_ref and tenant.sv is None):
            self._expect(r, 422)  # the module is not uploaded / the stored variable is not set
            return
        doc = self._expect(r, 201)
        assert doc["active_version"] == number, f"deployed {pkg} of {tenant.id}: {doc}"
        package = tenant.packages.setdefault(pkg, Package(periods=tenant.periods.setdefault(pkg, [])))
        package.versions[number] = version
        package.activate(number, time.time())

    def _package(self, i: int, pkg_i: int):
        with_pkgs = [t for t in self._tenants_with_keys() if t.packages]
        if not with_pkgs:
            return None, None
        tenant = with_pkgs[i % len(with_pkgs)]
        return tenant, sorted(tenant.packages)[pkg_i % len(tenant.packages)]

    def _tenants_with_keys(self) -> list[Tenant]:
        return [self.tenants[t] for t in sorted(self.tenants) if self.tenants[t].keys]

    @precondition(lambda self: any(t.keys and t.packages for t in self.tenants.values()))
    @rule(i=st.integers(0, 10), p=st.integers(0, 10), v=st.integers(0, 10))
    def rollback(self, i, p, v):
        self._step()
        tenant, pkg = self._package(i, p)
        package = tenant.packages[pkg]
        target = sorted(package.versions)[v % len(package.versions)]
        doc = self._expect(self._http("POST", f"/api/v1/packages/{pkg}/rollback", tenant.key(),
                                      json={"version": target}), 200)
        assert doc["active_version"] == target, doc
        package.activate(target, time.time())

    @precondition(lambda self: any(t.keys and t.packages for t in self.tenants.values()))
    @rule(i=st.integers(0, 10), p=st.integers(0, 10))
    def delete_package(self, i, p):
        self._step()
        tenant, pkg = self._package(i, p)
        self._expect(self._http("DELETE", f"/api/v1/packages/{pkg}", tenant.key()), 204)
        deleted_at = time.time()
        tenant.packages.pop(pkg).end(deleted_at)
        for exp in tenant.executions.values():
            if exp.package == pkg and exp.pending and exp.package_deleted_at is None:
                exp.package_deleted_at = deleted_at
        for _ in range(PROBES):  # every API process refuses its event at once
            r = self._http("POST", f"/events/{tenant.id}/{event_id(pkg)}", tenant.key(), json={"data": [{"x": 1}]})
            assert r.status_code == 404, f"event of deleted package {tenant.id}/{pkg}: {r.status_code} {r.text[:300]}"
        self._expect(self._http("GET", f"/api/v1/packages/{pkg}", tenant.key()), 404)

    # -- events ------------------------------------------------------------------------------
    @precondition(lambda self: self.tenants)
    @rule(i=st.integers(0, 10), pkg=st.sampled_from(PACKAGES), n=st.integers(1, 3),
          key=st.sampled_from(["own", "own", "own", "foreign", "revoked"]))
    def send(self, i, pkg, n, key):
        self._step()
        self._send(self.tenants[sorted(self.tenants)[i % len(self.tenants)]], pkg, n, key, i)

    def _send(self, tenant: Tenant, pkg: str, n: int, key: str, i: int) -> None:
        t = tenant.id
        data = [{"n": next(_uniq), "t": t} for _ in range(n)]
        if key == "own" and not tenant.keys:
            key = "revoked"
        if key == "own":
            r = self._http("POST", f"/events/{t}/{event_id(pkg)}", tenant.key(), json={"data": data})
            package = tenant.packages.get(pkg)
            if package is None:
                self._expect(r, 404)
                return
            ids = self._expect(r, 200)["executions"]
            assert len(ids) == n, ids
            self._accepted(tenant, pkg, package.versions[package.active], ids, data)
            return
        if key == "foreign":
            others = [o for o in self._tenants_with_keys() if o.id != t]
            secret = others[i % len(others)].key() if others else None
        else:
            secret = self.dead_keys[i % len(self.dead_keys)][1] if self.dead_keys else None
        if secret is None:
            return
        r = self._http("POST", f"/events/{t}/{event_id(pkg)}", secret, json={"data": data})
        assert r.status_code in (401, 403, 404), \
            f"{key} key accepted on {t}'s webhook: {r.status_code} {r.text[:300]}"

    @precondition(lambda self: any(t.keys and t.packages for t in self.tenants.values()))
    @rule(i=st.integers(0, 30))
    def burst(self, i):
        """1-3 events of a deployed package with the tenant's own key: the common case (one argument
        and first by name: the simplest sequences hypothesis tries are made of it)."""
        self._step()
        tenant, pkg = self._package(i, i // 3)
        self._send(tenant, pkg, 1 + i % 3, "own", i)

    @precondition(lambda self: any(t.keys and any(p.versions[p.active].cron for p in t.packages.values())
                                   for t in self.tenants.values()))
    @rule(i=st.integers(0, 10))
    def cron_fire(self, i):
        """Wait for the next fire of an active schedule (beat; every second): it is recorded, as the
        active version, under its tenant (and checked as every execution is)."""
        self._step()
        scheduled = [(t, name) for t in self._tenants_with_keys() for name, p in sorted(t.packages.items())
                     if p.versions[p.active].cron]
        tenant, pkg = scheduled[i % len(scheduled)]
        before = {eid for eid, x in tenant.executions.items() if x.package == pkg}
        deadline = time.monotonic() + CRON_WAIT_S
        while True:
            self._check_executions(tenant)  # a fire is taken into the model (_fired) and checked
            if any(x.package == pkg for eid, x in tenant.executions.items() if eid not in before):
                return
            if time.monotonic() > deadline:
                self._violation(f"{tenant.id}/{pkg} v{tenant.packages[pkg].active} has a schedule firing every "
                                f"second, yet nothing fired within {CRON_WAIT_S:.0f}s")
                return
            time.sleep(0.2)

    def _accepted(self, tenant: Tenant, pkg: str, version: Version, ids: list[str], data: list) -> None:
        now = time.monotonic()
        for eid, payload in zip(ids, data):
            assert eid not in tenant.executions, f"execution id {eid} handed out twice"
            tenant.executions[eid] = Expected(eid, tenant.id, pkg, version, payload, now, [tenant.sv])
            STATS["executions"] += 1

    def _execution(self, i: int, e: int, which=lambda exp: True):
        tenants = [t for t in self._tenants_with_keys() if any(which(x) for x in t.executions.values())]
        if not tenants:
            return None, None
        tenant = tenants[i % len(tenants)]
        candidates = [x for x in tenant.executions.values() if which(x)]
        return tenant, candidates[e % len(candidates)]

    @precondition(lambda self: any(t.keys and t.executions for t in self.tenants.values()))
    @rule(i=st.integers(0, 10), e=st.integers(0, 1000))
    def resubmit(self, i, e):
        self._step()
        tenant, old = self._execution(i, e)
        r = self._http("POST", f"/api/v1/executions/{old.id}/resubmit", tenant.key())
        package = tenant.packages.get(old.package)
        if package is None:
            self._expect(r, 409)
            return
        doc = self._expect(r, 201)
        assert doc["resubmitted_from"] == old.id and doc["version"] == package.active, doc
        self._accepted(tenant, old.package, package.versions[package.active], [doc["id"]], [old.payload])

    @precondition(lambda self: any(t.keys and t.executions for t in self.tenants.values()))
    @rule(i=st.integers(0, 10), e=st.integers(0, 1000))
    def retry(self, i, e):
        """Replay a dead letter (202); an execution that is not dead-lettered is a 409."""
        self._step()
        tenant, exp = self._execution(i, e)
        rec = self._expect(self._http("GET", f"/api/v1/executions/{exp.id}", tenant.key()), 200)
        self._observe(exp, rec)
        r = self._http("POST", f"/api/v1/executions/{exp.id}/retry", tenant.key())
        version_gone = exp.package not in tenant.packages \
            or exp.version is not tenant.packages[exp.package].versions.get(exp.version.number)
        if rec["status"] in FINAL and (not rec["dead_lettered"] or version_gone):
            self._expect(r, 409)  # not dead-lettered, or its version was deleted with its package
            return
        if rec["status"] not in FINAL and r.status_code == 409:
            return  # it was not dead-lettered (yet)
        self._expect(r, 202)
        exp.final, exp.accepted, exp.sv_states, exp.cancel = None, time.monotonic(), [tenant.sv], None

    @precondition(lambda self: any(t.keys and t.executions for t in self.tenants.values()))
    @rule(i=st.integers(0, 10), e=st.integers(0, 1000), wait=st.sampled_from([0, 1]))
    def cancel(self, i, e, wait):
        self._step()
        tenant, exp = self._execution(i, e)
        doc = self._expect(self._http("POST", f"/api/v1/executions/{exp.id}/cancel?wait={wait}", tenant.key()),
                           200, 202)
        what = doc["cancel"]
        if exp.final is not None:
            assert what == "already_finished", f"cancel of an execution seen final answered {what}: {doc}"
        elif what in ("cancelled_queued", "cancelled_running"):
            assert doc["status"] == "cancelled", doc
            exp.cancel = "must"
        elif what == "requested":
            exp.cancel = exp.cancel or "maybe"
        else:
            assert what == "already_finished" and doc["status"] in FINAL, doc

    # -- environment -------------------------------------------------------------------------
    @precondition(lambda self: any(t.keys for t in self.tenants.values()))
    @rule(i=st.integers(0, 10), secret=st.booleans())
    def env_set(self, i, secret):
        self._step()
        tenant = self._tenant_with_key(i)
        value = secrets.token_hex(12)
        doc = self._expect(self._http("PUT", "/api/v1/environment/sv", tenant.key(),
                                      json={"value": value, "secret": secret}), 200)
        assert doc["value"] == ("***" if secret else value), doc
        self._sv(tenant, (value, secret))

    @precondition(lambda self: any(t.keys for t in self.tenants.values()))
    @rule(i=st.integers(0, 10))
    def env_unset(self, i):
        self._step()
        tenant = self._tenant_with_key(i)
        r = self._http("DELETE", "/api/v1/environment/sv", tenant.key())
        self._expect(r, 404 if tenant.sv is None else 204)
        self._sv(tenant, None)

    @staticmethod
    def _sv(tenant: Tenant, state) -> None:
        tenant.sv = state
        tenant.sv_history.append(state)
        for exp in tenant.executions.values():
            if exp.pending:
                exp.sv_states.append(state)

    # -- processes ---------------------------------------------------------------------------
    @precondition(lambda self: self.kills < 3)
    @rule(i=st.integers(0, 10))
    def kill_pool_process(self, i):
        """SIGKILL one pool process of the worker: what it ran is redelivered, a new one is forked
        (at most 3 per sequence)."""
        self._step()
        self.kills += 1
        if self.platform.kill_pool_process(i) is not None:
            STATS["pool_kills"] += 1

    @precondition(lambda self: self.steps >= 25 and not self.restarted)
    @rule()
    def restart_worker(self):
        """Warm shutdown of the Celery worker and a new one (costly: at most once per sequence, after
        25 steps; the new one gets ready while the sequence goes on)."""
        self._step()
        self.restarted = True
        self.platform.restart_worker()
        STATS["worker_restarts"] += 1

    # -- invariants --------------------------------------------------------------------------
    @invariant()
    def check_tenants(self):
        """Each tenant's own view holds its data and nothing else; outcomes are the expected ones."""
        # the harness's own processes first: a dead worker would pass for executions never run
        assert self.platform.worker_alive(), f"the Celery worker exited:\n{self.platform.worker.log_tail()}"
        tenants = self._tenants_with_keys()
        if tenants:  # one tenant per step, in turn: each is checked every few steps
            tenant = tenants[self.steps % len(tenants)]
            self._check_executions(tenant)
            self._check_one_listing(tenant)

    def _check_executions(self, tenant: Tenant) -> None:
        seen = {}
        for rec in self._all_executions(tenant.key()):
            if rec["tenant"] == tenant.id and rec["id"] not in tenant.executions and rec["trigger"] == "cron":
                self._fired(tenant, rec)
            if rec["tenant"] != tenant.id or rec["id"] not in tenant.executions:
                self._violation(f"tenant {tenant.id} lists an execution it never sent: {json.dumps(rec)[:600]}")
            seen[rec["id"]] = rec
        for eid, exp in tenant.executions.items():
            if eid in seen:
                self._observe(exp, seen[eid])
            elif exp.pending:
                self._violation(f"tenant {tenant.id} does not list its execution {eid} (accepted as "
                                f"{exp.package} v{exp.version.number}, {exp.version.module!r})")
                exp.final = {"status": "(missing)"}

    def _fired(self, tenant: Tenant, rec: dict) -> None:
        """A cron fire: into the model when a version of the tenant with a schedule was active then."""
        version, problem = cron_version(tenant, rec)
        if problem:
            self._violation(f"tenant {tenant.id}: execution {rec['id']} {problem}: {json.dumps(rec)[:600]}")
            return
        exp = Expected(rec["id"], tenant.id, rec["package"], version, version.cron_payload, time.monotonic(),
                       list(tenant.sv_history))
        if rec["package"] not in tenant.packages:
            exp.package_deleted_at = tenant.periods[rec["package"]][-1][2]
        tenant.executions[rec["id"]] = exp
        STATS["cron_fires"] += 1

    def _all_executions(self, key: str) -> list[dict]:
        items, cursor = [], ""
        while True:
            doc = self._expect(self._http("GET", f"/api/v1/executions?limit=500{cursor}", key), 200)
            items += doc["items"]
            if not doc.get("next_cursor"):
                return items
            cursor = f"&cursor={doc['next_cursor']}"

    def _observe(self, exp: Expected, rec: dict) -> None:
        """Check a record once it is final; an execution not final within the bound is a violation."""
        if rec["status"] in FINAL:
            if exp.final is None:
                problem = check_record(exp, rec)
                if problem:
                    self._violation(f"execution {exp.id} of {exp.tenant}: {problem}\nrecord: {json.dumps(rec)[:1500]}")
                exp.final = rec
        elif age(exp) > TERMINAL_S:
            self._violation(f"execution {exp.id} of {exp.tenant} still {rec['status']} {age(exp):.0f}s after it "
                            f"was accepted (bound {TERMINAL_S:.0f}s): {json.dumps(rec)[:1500]}\n{self.platform.logs()}")
            exp.final = rec

    def _violation(self, message: str) -> None:
        """Outcomes are seen when the platform gets to them: raised at the end of the sequence, so that
        a failure is always at the same step of the sequence (hypothesis replays and shrinks it)."""
        if message not in self.violations:
            self.violations.append(message)

    def _check_one_listing(self, tenant: Tenant) -> None:
        """One of the tenant's other views, in turn (files, packages, environment, stream, a foreign id)."""
        which = (self.steps // len(TENANTS)) % 5
        key = tenant.key()
        if which == 0:
            items = self._expect(self._http("GET", "/api/v1/files", key), 200)["items"]
            assert {f["name"]: f["sha256"] for f in items} == tenant.files, (tenant.id, items, tenant.files)
        elif which == 1:
            items = self._expect(self._http("GET", "/api/v1/packages", key), 200)["items"]
            got = {p["id"]: p["active_version"] for p in items}
            assert got == {n: p.active for n, p in tenant.packages.items()}, (tenant.id, items)
        elif which == 2:
            items = self._expect(self._http("GET", "/api/v1/environment", key), 200)["items"]
            want = [] if tenant.sv is None else [("sv", tenant.sv[1], "***" if tenant.sv[1] else tenant.sv[0])]
            assert [(v["name"], v["secret"], v["value"]) for v in items] == want, (tenant.id, items)
        elif which == 3:
            r = self._http("GET", "/api/v1/executions/stream?follow=false&recent=200", key)
            assert r.status_code == 200, f"stream of {tenant.id}: {r.status_code} {r.text[:300]}"
            for line in r.text.splitlines():
                if line.startswith("data: "):
                    rec = json.loads(line[6:])
                    assert rec["tenant"] == tenant.id and rec["id"] in tenant.executions, \
                        f"tenant {tenant.id} streams an execution it never sent: {line[:600]}"
        else:
            for other in self.tenants.values():
                if other is tenant:
                    continue
                for eid in list(other.executions)[-2:]:
                    for path in (f"/api/v1/executions/{eid}", f"/api/v1/executions/{eid}/resubmit"):
                        method = "GET" if path.endswith(eid) else "POST"
                        self._expect(self._http(method, path, key), 404)
                for pkg in other.packages:
                    if pkg not in tenant.packages:
                        self._expect(self._http("GET", f"/api/v1/packages/{pkg}", key), 404)

    # -- end of a sequence -------------------------------------------------------------------
    def teardown(self):
        """Every accepted execution becomes final within the bound (and as expected); then the
        tenants are deleted, and once no task is left in the broker each id this sequence used
        is created again and must be empty: nothing of a deleted tenant comes back."""
        failure = sys.exc_info()[1]  # teardown runs in hypothesis' `finally`: a step may have failed
        try:
            if failure is None:
                self._finish()
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if failure is not None and not FIRST_FAILURE and not isinstance(failure, (StopTest, Frozen)):
                FIRST_FAILURE.append(f"{type(failure).__name__}: {failure}")
                FIRST_FAILURE.extend(" ; ".join(steps) or "(no step)" for steps in HISTORY)

    def _finish(self) -> None:
        try:
            for tenant in self.tenants.values():  # a tenant whose keys were all revoked gets one to be checked
                if not tenant.keys and any(x.pending for x in tenant.executions.values()):
                    r = self._http("POST", f"/api/v1/tenants/{tenant.id}/keys", ADMIN, json={"name": "teardown"})
                    tenant.keys["teardown"] = self._expect(r, 201)["key"]
            start = time.monotonic()  # cron goes on firing: wait for what was accepted until now
            while True:
                pending = [t for t in self._tenants_with_keys()
                           if any(x.pending and x.accepted < start for x in t.executions.values())]
                if not pending:
                    break
                for tenant in pending:
                    self._check_executions(tenant)
                time.sleep(0.2)
            for t in list(self.tenants):
                self._expect(self._http("DELETE", f"/api/v1/tenants/{t}", ADMIN), 204)
                self.used.add(self.tenants.pop(t).id)
            # no worker holds a task any more: nothing of the deleted tenants is running (what waits in
            # a queue finds its row gone when it is claimed, and is dropped)
            wait_until(lambda: not self.platform.broker_backlog()[UNACKED_KEY], TERMINAL_S, interval=0.1,
                       what=lambda: f"no task held by workers after the end: {self.platform.broker_backlog()}")
            for t in sorted(self.used):
                key = self._expect(self._http("POST", "/api/v1/tenants", ADMIN, json={"id": t}), 201)["key"]
                self.tenants[t] = Tenant(t, keys={"default": key})
                for path in ("/api/v1/executions", "/api/v1/files", "/api/v1/packages", "/api/v1/environment"):
                    items = self._expect(self._http("GET", path, key), 200)["items"]
                    if items:
                        self._violation(f"deleted tenant {t} created again: {path} is not empty: {items[:3]}")
            if self.violations:
                more = f"\n... and {len(self.violations) - 5} more" if len(self.violations) > 5 else ""
                raise PlatformViolation(f"{len(self.violations)} violation(s):\n"
                                        + "\n".join(self.violations[:5]) + more)
        finally:
            for t in list(self.tenants):
                self._http("DELETE", f"/api/v1/tenants/{t}", ADMIN)
