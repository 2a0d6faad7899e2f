"""Celery task events (what Flower shows) leave the worker in batches, none lost
(jobico_worker/consumer.py). Real API, worker, Redis, PostgreSQL and S3."""
from __future__ import annotations

import threading

from celery.events.receiver import EventReceiver

from jobico_core.broker import make_celery
from tests.waiting import wait_until

from .helpers import example

HELLO_YAML = example("packages/hello.yaml").read_text()


class CountingReceiver(EventReceiver):
    """Celery's event receiver, counting the broker messages the events came in."""

    messages = 0
    ready = threading.Event()

    def on_consume_ready(self, *args, **kwargs):
        self.ready.set()
        return super().on_consume_ready(*args, **kwargs)

    def _receive(self, body, message, *args, **kwargs):
        if isinstance(body, list) and any(e.get("type", "").startswith("task-") for e in body) or \
                isinstance(body, dict) and body.get("type", "").startswith("task-"):
            self.messages += 1
        return super()._receive(body, message, *args, **kwargs)


def test_task_events_arrive_complete_in_fewer_messages_than_tasks(platform):
    p = platform
    key = p.tenant("demo")
    for f in ("jobicolets/greet.wasm", "jobicolets/echo.wasm", "schemas/hello.json", "schemas/result.json"):
        p.upload(key, example(f))
    p.deploy(key, HELLO_YAML)
    n = 30
    ids = []
    for i in range(n):  # one request at a time: one jobico.execute task each
        r = p.post(key, "demo", "hello", [{"name": f"n{i}"}])
        assert r.status_code == 200, r.text
        ids.append(r.json()["executions"][0])

    app = make_celery(p.settings, name="events-test")
    seen: dict[str, list[str]] = {}
    lock = threading.Lock()

    def on_event(event: dict) -> None:
        if event["type"].startswith("task-"):
            with lock:
                seen.setdefault(event["uuid"], []).append(event["type"])

    with app.connection_for_read() as conn:
        recv = CountingReceiver(conn, handlers={"*": on_event}, app=app)
        consuming = threading.Thread(target=lambda: recv.capture(limit=None, timeout=None, wakeup=False),
                                     daemon=True)
        consuming.start()
        try:
            assert recv.ready.wait(20), "event receiver not consuming"  # bound before the worker sends
            p.start_worker("w1", concurrency=1, extra_env={"JOBICO_PYTHON_PREPARE": "0"})
            for execution_id in ids:
                assert p.wait(key, execution_id)["status"] == "succeeded"
            wanted = {"task-received", "task-started", "task-succeeded"}
            wait_until(lambda: all(wanted <= set(seen.get(i, ())) for i in ids), 30,
                       what=f"every task's received, started and succeeded events (seen {len(seen)})")
        finally:
            recv.should_stop = True
            consuming.join(10)
    for i in ids:
        kinds = [k for k in seen[i] if k in ("task-received", "task-started", "task-succeeded")]
        assert kinds == ["task-received", "task-started", "task-succeeded"], (i, seen[i])
    # Celery alone publishes the buffer at every turn of its loop: two or three messages per task
    assert recv.messages < n, recv.messages
