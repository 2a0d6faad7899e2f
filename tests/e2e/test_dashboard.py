"""`jobico dashboard` in a real pseudo-terminal (pexpect) rendered by a terminal emulator (pyte),
against the live API with a real worker."""
from __future__ import annotations

import os
from pathlib import Path

import pexpect
import pyte

from tests.waiting import wait_until

from .streamkit import post_ids, setup_tenant

ROOT = Path(__file__).resolve().parents[2]
JOBICO = ROOT / ".venv" / "bin" / "jobico"
COLS, ROWS = 130, 36


def _display(screen: pyte.Screen) -> str:
    return "\n".join(line.rstrip() for line in screen.display)


def test_dashboard_in_a_pty(platform):
    p = platform
    key = setup_tenant(p, "tenant_d")
    p.start_worker()
    done = post_ids(p, key, "tenant_d", "evil", [{}])
    p.wait(key, done[0])
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBICO_")}
    env.update({"JOBICO_API_URL": p.url, "JOBICO_TOKEN": key, "JOBICO_HOME": str(p.tmp / "home"),
                "TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS)})
    screen = pyte.Screen(COLS, ROWS)
    stream = pyte.ByteStream(screen)
    raw = bytearray()
    child = pexpect.spawn(str(JOBICO), ["dashboard", "--refresh", "1"], env=env, dimensions=(ROWS, COLS),
                          timeout=5)

    def pump(until, timeout=30.0) -> str:
        def matched() -> str | None:
            try:
                data = child.read_nonblocking(65536, timeout=0.2)
                raw.extend(data)
                stream.feed(data)
            except pexpect.TIMEOUT:
                pass
            text = _display(screen)
            if until(text):
                return text
            assert child.isalive(), f"the dashboard exited; screen:\n{text}\n--- raw tail: {bytes(raw[-2000:])!r}"
            return None
        return wait_until(matched, timeout, interval=0, what=lambda: f"screen never matched:\n{_display(screen)}"
                          f"\n--- raw tail: {bytes(raw[-2000:])!r}")

    try:
        first = pump(lambda t: "tools" in t and "echo.wasm" in t and "succeeded" in t)
        assert "[red]x[/red]" in first  # the guest's markup shows as text; its \x1b[2J did not clear anything
        # a new execution streams in while the dashboard is open
        live = post_ids(p, key, "tenant_d", "fail", [{}])
        text = pump(lambda t: "failed" in t and "invalid order" in t)
        # keyboard: tab to the files pane, down, tab to results, down: the detail shows that result's id
        child.send("\t")
        child.send("\x1b[B")
        child.send("\t")
        child.send("\x1b[B")
        text = pump(lambda t: done[0] in t)
        assert live[0] not in text or done[0] in text
        (p.tmp / "dashboard-screen.txt").write_text(text)
        Path(os.environ.get("JOBICO_DASHBOARD_SCREEN", p.tmp / "screen.txt")).write_text(text)
        child.send("q")
        child.expect(pexpect.EOF, timeout=10)
        raw.extend(child.before or b"")
    finally:
        if child.isalive():
            child.terminate(force=True)
    child.close()
    assert child.exitstatus == 0, bytes(raw[-1000:])
    assert b"\x1b[?1049h" in raw and raw.rfind(b"\x1b[?1049l") > raw.rfind(b"\x1b[?1049h")  # alt screen left
    assert raw.rfind(b"\x1b[?25h") > raw.rfind(b"\x1b[?25l")  # cursor shown again
