"""The live stream (GET /api/v1/executions/stream) and `jobico stream` (`stream-from-recorder`),
end to end: real API, real Celery worker, real Redis/PostgreSQL/S3."""
from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import requests

from jobico_cli.client import Client
from jobico_cli.stream import ExecutionStream
from tests.waiting import holds_for, wait_until

from .streamkit import EVIL_RESULT, CuttableProxy, SSEReader, post_ids, setup_tenant

ROOT = Path(__file__).resolve().parents[2]
JOBICO = ROOT / ".venv" / "bin" / "jobico"


def _cli_env(url: str, key: str, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBICO_")}
    env.update({"JOBICO_API_URL": url, "JOBICO_TOKEN": key, "JOBICO_HOME": str(home), "COLUMNS": "200"})
    return env


def test_stream_live_filters_isolation_cli_and_hygiene(platform):
    p = platform
    key_a = setup_tenant(p, "tenant_a", prefix="a_")
    key_b = setup_tenant(p, "tenant_b", prefix="b_")
    everything = SSEReader(p.url, key_a)
    failed_only = SSEReader(p.url, key_a, {"status": "failed"})
    by_event = SSEReader(p.url, key_a, {"event": "a_ok", "package": "tools"})
    other_tenant = SSEReader(p.url, key_b)
    # no credentials / a bad Last-Event-ID: refused before streaming
    assert requests.get(p.url + "/api/v1/executions/stream", timeout=5).status_code == 401
    r = p.call(key_a, "GET", "/api/v1/executions/stream", headers={"Last-Event-ID": "nope"})
    assert r.status_code == 400 and r.json()["code"] == 400
    p.start_worker()
    ok = post_ids(p, key_a, "tenant_a", "a_ok", [{"n": 1}, {"n": 2}])
    fail = post_ids(p, key_a, "tenant_a", "a_fail", [{}])
    evil = post_ids(p, key_a, "tenant_a", "a_evil", [{}])
    b_ok = post_ids(p, key_b, "tenant_b", "b_ok", [{"n": 3}])
    everything.wait_for(ok + fail + evil)
    failed_only.wait_for(fail)
    by_event.wait_for(ok)
    other_tenant.wait_for(b_ok)
    holds_for(lambda: len(everything.ids()) == len(ok + fail + evil) and failed_only.ids() == fail
              and len(by_event.ids()) == len(ok) and other_tenant.ids() == b_ok, 0.3, what="no duplicate, no stray")
    # filters, isolation, no duplicates, monotonic ids = the records' seq
    assert sorted(everything.ids()) == sorted(ok + fail + evil)
    assert failed_only.ids() == fail
    assert sorted(by_event.ids()) == sorted(ok)
    assert other_tenant.ids() == b_ok
    for seq, d in everything.events:
        assert seq == d["seq"] and d["tenant"] == "tenant_a" and d["status"] != "queued"
        assert isinstance(d["logs"], list)
    assert everything.events[0][1]["status"] in ("succeeded", "failed")
    evil_rec = next(d for _, d in everything.events if d["id"] == evil[0])
    assert evil_rec["result"] == EVIL_RESULT  # the API carries the exact text; the CLI shows it inert
    for reader in (everything, failed_only, by_event, other_tenant):
        reader.close()

    # replay: Last-Event-ID (header or query) sends what followed, then live
    first_seq = min(seq for seq, _ in everything.events)
    replay = SSEReader(p.url, key_a, {"follow": "false"}, headers={"Last-Event-ID": str(first_seq)})
    assert replay.ended.wait(10)
    # all but the named one (the live feed may have sent it after a higher seq: a late commit)
    named = next(d["id"] for seq, d in everything.events if seq == first_seq)
    assert set(replay.ids()) >= set(ok + fail + evil) - {named}
    assert len(replay.ids()) == len(set(replay.ids()))
    replay_q = SSEReader(p.url, key_a, {"follow": "false", "last_event_id": str(max(s for s, _ in everything.events))})
    assert replay_q.ended.wait(10)
    assert len(replay_q.ids()) == len(set(replay_q.ids()))  # only the lookback window, never twice

    home = p.tmp / "cli-home"
    env = _cli_env(p.url, key_a, home)
    # without --follow: the recent ones of the package, then exit 0
    run = subprocess.run([str(JOBICO), "stream-from-recorder", "tools", "--logs"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    for eid in ok + fail + evil:
        assert any(eid in line for line in lines), run.stdout
    assert "\x1b" not in run.stdout  # not a terminal: no colours, and the guest's escape is stripped
    evil_line = next(line for line in lines if evil[0] in line)
    assert "[red]x[/red]" in evil_line and "succeeded" in evil_line
    fail_line = next(line for line in lines if fail[0] in line)
    assert "failed" in fail_line and "code=3" in fail_line and "invalid order" in fail_line
    # --json: JSON Lines, complete records, escapes kept inert as \u001b (`jobico stream`: the same command)
    run = subprocess.run([str(JOBICO), "stream", "tools", "--json"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert {r["id"] for r in records} == set(ok + fail + evil)
    assert "\x1b" not in run.stdout and "\\u001b" in run.stdout
    assert next(r for r in records if r["id"] == evil[0])["result"] == EVIL_RESULT
    # an unknown package is refused (exit 1)
    run = subprocess.run([str(JOBICO), "stream-from-recorder", "nope"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 1 and "nope" in run.stderr

    # --follow: prints executions as they finish, in a rich terminal too (forced colour): markup stays inert
    follow = subprocess.Popen([str(JOBICO), "stream-from-recorder", "tools", "--follow", "--recent", "0"],
                              env={**env, "FORCE_COLOR": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        got: list[str] = []
        reader = threading.Thread(target=lambda: got.extend(iter(follow.stdout.readline, "")), daemon=True)
        reader.start()
        # the CLI is live once an event posted now shows up: its start-up can take seconds on a busy
        # box, and with --recent 0 an execution recorded before it connected is (rightly) not shown
        def a_probe_shows() -> bool:
            probe = post_ids(p, key_a, "tenant_a", "a_evil", [{}])
            try:
                wait_until(lambda: any(probe[0] in line for line in got), 5, interval=0.1)
            except AssertionError:
                return False
            return True
        wait_until(a_probe_shows, 60, what="the CLI stream showing a new execution", interval=0)
        more = post_ids(p, key_a, "tenant_a", "a_evil", [{}])
        wait_until(lambda: any(more[0] in line for line in got), 30, what="the new execution printed")
        line = next(line for line in got if more[0] in line)
        assert "[red]x[/red]" in line and "\x1b[2J" not in line
        assert "\x1b[" in line  # coloured status: the only escapes are the CLI's own
        assert not any(eid in "".join(got) for eid in ok)  # --recent 0: only new ones
    finally:
        follow.terminate()
        follow.wait(10)


def test_disconnect_loses_nothing(platform):
    """Executions finishing while the client is cut off arrive after its reconnect, each exactly once."""
    p = platform
    key = setup_tenant(p, "tenant_r")
    p.start_worker()
    proxy = CuttableProxy(int(p.url.rsplit(":", 1)[1]))
    states: list[str] = []
    stream = ExecutionStream(Client(proxy.url, key), follow=True, on_state=states.append, max_backoff=0.5)
    got: list[dict] = []
    t = threading.Thread(target=lambda: got.extend(stream) if False else [got.append(e) for e in stream],
                         daemon=True)
    t.start()
    try:
        wait_until(lambda: "connected" in states, 10, what="the stream connected")
        before = post_ids(p, key, "tenant_r", "ok", [{"i": i} for i in range(5)])
        for eid in before:
            p.wait(key, eid)
        wait_until(lambda: len(got) >= 5, 30, what="the first 5 executions streamed")
        # cut the connection and keep the server "down" while more executions finish
        proxy.refuse = True
        proxy.cut()
        during = post_ids(p, key, "tenant_r", "ok", [{"i": i} for i in range(5, 12)])
        during += post_ids(p, key, "tenant_r", "fail", [{}, {}])
        for eid in during:
            p.wait(key, eid)
        proxy.refuse = False
        after = post_ids(p, key, "tenant_r", "ok", [{"i": i} for i in range(12, 15)])
        expected = before + during + after
        wait_until(lambda: len({e["id"] for e in got}) >= len(expected), 30, what="every execution streamed")
        holds_for(lambda: len(got) == len(expected), 0.5, what="each execution exactly once")
        ids = [e["id"] for e in got]
        assert sorted(ids) == sorted(expected), (len(ids), len(expected))  # all N, exactly once
        assert states.count("connected") >= 2 and "reconnecting" in states
    finally:
        stream.close()
        proxy.close()


def test_a_resume_starts_strictly_after_the_named_execution(platform):
    """`Last-Event-ID: N` (header or query) never sends execution N again, however often the
    client resumes from it; everything after N comes, once."""
    p = platform
    key = setup_tenant(p, "tenant_s")
    live = SSEReader(p.url, key)
    p.start_worker()
    ids = [post_ids(p, key, "tenant_s", "ok", [{"n": i}])[0] for i in range(4)]
    live.wait_for(ids)
    live.close()
    seq = {d["id"]: s for s, d in live.events}
    order = sorted(ids, key=seq.get)
    last, middle = order[-1], order[1]

    def resume(n: int, query: bool = False) -> list[str]:
        if query:
            reader = SSEReader(p.url, key, {"follow": "false", "last_event_id": str(n)})
        else:
            reader = SSEReader(p.url, key, {"follow": "false"}, headers={"Last-Event-ID": str(n)})
        assert reader.ended.wait(20) and reader.error is None
        got = reader.ids()
        assert len(got) == len(set(got))
        return got

    for attempt in range(3):
        assert last not in resume(seq[last], query=attempt == 2)
    after_middle = resume(seq[middle])
    assert middle not in after_middle and set(order[2:]) <= set(after_middle)
    # the lookback (late commits) reaches below N, never N: what it sends is older than N
    assert all(seq[i] < seq[middle] for i in after_middle if i not in order[2:])
