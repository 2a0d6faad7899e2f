"""jobico_worker.cancellation's registry: what runs here, requests that come early, cancel_here,
with the real runtime stopping a real guest (the listener itself: tests/integration)."""
import threading
import time
from pathlib import Path

import pytest

from jobico_core.broker import cancel_message, parse_cancel_message
from jobico_core.limits import Limits
from jobico_runtime import Runtime, Status
from jobico_worker import cancellation
from tests.waiting import wait_until

SLEEPER = (Path(__file__).resolve().parents[2] / "examples" / "jobicolets" / "sleeper.wasm").read_bytes()
LONG = Limits(timeout_ms=20_000, fuel=10_000_000_000)


@pytest.fixture(autouse=True)
def empty_registry():
    cancellation._running.clear()
    cancellation._recent.clear()
    yield
    cancellation._running.clear()
    cancellation._recent.clear()


def test_cancel_here_stops_a_registered_guest_and_only_it():
    rt = Runtime()
    box: dict = {}

    def run():
        with cancellation.watch("e1") as token:
            box["out"] = rt.run(SLEEPER, b"{}", limits=LONG, cancel=token)

    th = threading.Thread(target=run)
    th.start()
    wait_until(lambda: "e1" in cancellation.running_here(), 5, interval=0.005)
    wait_until(lambda: rt.ticker.active > 0, 5, what="the guest running", interval=0.005)
    assert cancellation.cancel_here("e2", "not running here") is False
    t0 = time.monotonic()
    assert cancellation.cancel_here("e1", "cancelled by ops") is True
    th.join(5)
    assert not th.is_alive() and time.monotonic() - t0 < 2
    assert box["out"].status is Status.CANCELLED and box["out"].message.startswith("cancelled: cancelled by ops")
    assert cancellation.running_here() == []  # unregistered on the way out


def test_a_request_heard_before_the_run_registers_is_applied_when_it_does():
    assert cancellation.requested("early", "cancelled by ops") is False
    with cancellation.watch("early") as token:
        assert token.cancelled and token.reason == "cancelled by ops"
        out = Runtime().run(SLEEPER, b"{}", limits=LONG, cancel=token)
    assert out.status is Status.CANCELLED and out.message == "cancelled before start"
    with cancellation.watch("early") as token:  # used once
        assert not token.cancelled


def test_early_requests_expire_and_are_bounded(monkeypatch):
    monkeypatch.setattr(cancellation, "RECENT_S", 0.05)
    cancellation.requested("old", "x")
    time.sleep(0.1)
    with cancellation.watch("old") as token:
        assert not token.cancelled
    monkeypatch.setattr(cancellation, "MAX_RECENT", 3)
    for i in range(10):
        cancellation.requested(f"id{i}", "x")
    assert list(cancellation._recent) == ["id7", "id8", "id9"]


def test_cancel_messages():
    assert parse_cancel_message(cancel_message("abc", "ops")) == ("abc", "ops")
    assert parse_cancel_message(cancel_message("abc", None).encode()) == ("abc", None)
    for junk in (b"abc", b"{}", b'{"id": 3}', b"[1]", b"\xff"):
        assert parse_cancel_message(junk) is None
