"""The worked example of docs/jobicolets.md through the real platform: one package with the
greet jobicolet in each compiled language (C, Rust for wasm32-unknown-unknown and for
wasm32-wasip1, TinyGo when its module is built) and the WAT echoes; every event of the
document's table goes through the webhook, the tenant queue, a Celery worker and
PostgreSQL, and each record must show the documented result."""
from __future__ import annotations

import json

from tests.guest_examples import GREET_MODULES, WASM_EXAMPLES, documented_cases

from .helpers import example


def _runtime_id(module: str) -> str:
    return module.removesuffix(".wasm").replace("_", "-")


def test_greet_in_every_language_through_the_platform(platform):
    p = platform
    key = p.tenant("guests")
    modules = [m for m in sorted(GREET_MODULES) if (WASM_EXAMPLES / m).exists()]
    assert {"greet.wasm", "greet_rust.wasm", "greet_rust_wasi.wasm"} <= set(modules)
    for m in modules + ["echo.wasm", "echo_tinygo.wasm"]:
        p.upload(key, WASM_EXAMPLES / m)
    p.upload(key, example("schemas/any.json"))
    jobs = "\n".join(
        f"  - event: {{id: {_runtime_id(m)}, schema: {{id: s, schemaref: any.json}}, supplierqueue: main, "
        f"runtime: {_runtime_id(m)}}}" for m in modules + ["echo.wasm", "echo_tinygo.wasm"])
    runtimes = "\n".join(f"  - {{id: {_runtime_id(m)}, moduleref: {m}}}"
                         for m in modules + ["echo.wasm", "echo_tinygo.wasm"])
    p.deploy(key, f"id: greetings\nqueues: [{{id: main}}]\njobs:\n{jobs}\nruntimes:\n{runtimes}\n")
    p.start_worker()

    cases = documented_cases()
    sent = {}   # (module, case index) -> execution id
    for m in modules:
        r = p.post(key, "guests", _runtime_id(m), [json.loads(c.event) for c in cases])
        assert r.status_code == 200, r.text
        for i, eid in enumerate(r.json()["executions"]):
            sent[(m, i)] = eid
    echoes = {}
    for m in ("echo.wasm", "echo_tinygo.wasm"):
        r = p.post(key, "guests", _runtime_id(m), [{"name": "Ada", "lang": "fr"}])
        assert r.status_code == 200, r.text
        echoes[m] = r.json()["executions"][0]

    for (m, i), eid in sent.items():
        case = cases[i]
        rec = p.wait(key, eid)
        got = (rec["status"], rec["code"], rec["result"], [(x["level"], x["message"]) for x in rec["logs"]])
        assert got == (case.status, case.code, case.result, list(case.logs)), (m, case, rec)
        if m == "greet_rust_wasi.wasm":
            assert rec["stdout"] == f"greet: {case.result}\n"
        else:
            assert rec["stdout"] == ""
    for eid in echoes.values():
        rec = p.wait(key, eid)
        # the guest received the canonical form of the event: compact, keys sorted
        assert (rec["status"], rec["code"], rec["result"]) == ("succeeded", 0, '{"lang":"fr","name":"Ada"}'), rec
