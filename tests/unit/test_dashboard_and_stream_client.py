"""Terminal-free logic of the dashboard, the SSE parser and the one-line renderings."""
from __future__ import annotations

import io
import json

from rich.console import Console

from jobico_cli.commands.executions import executions_table
from jobico_cli.commands.stream import execution_line, log_lines
from jobico_cli.dashboard import DashboardState, parse_keys, render
from jobico_cli.output import json_line, one_line
from jobico_cli.stream import parse_sse

EVIL = "[red]x[/red]\x1b[2J\x1b]0;pwned\x07"


def _exec(i: int, **kw) -> dict:
    d = {"id": f"01a2b3c4-0000-7000-8000-{i:012d}", "tenant": "t", "package": "tools", "version": 1,
         "event": "ok", "status": "succeeded", "code": 0, "result": f"r{i}", "logs": [], "seq": i,
         "finished_at": f"2026-01-01T12:00:0{i % 10}Z"}
    d.update(kw)
    return d


def _screen(renderable, width=120, height=40) -> str:
    console = Console(width=width, height=height, record=True, force_terminal=True, color_system="truecolor")
    console.print(renderable)
    return console.export_text()


def test_parse_sse_blocks_comments_ids_and_split_chunks():
    raw = b": hello\n\nretry: 2000\nid: 7\nevent: execution\ndata: {\"id\": \"a\"}\n\nid: 9\n\n: keepalive\n\n" \
          b"id: 10\r\nevent: execution\r\ndata: {\"id\":\r\n\r\n"
    chunks = [raw[i:i + 5] for i in range(0, len(raw), 5)]
    assert list(parse_sse(iter(chunks))) == [("execution", '{"id": "a"}', "7"), (None, None, "9"),
                                             ("execution", '{"id":', "10")]


def test_parse_keys():
    assert parse_keys("\tq") == ["tab", "q"]
    assert parse_keys("\x1b[A\x1b[B\x1b[Z\x1bOC") == ["up", "down", "shift-tab", "right"]
    assert parse_keys("\x1b[5~x\x1b[99;5Pj") == ["pageup", "x", "j"]
    assert parse_keys("\x1b") == ["escape"]


def test_state_navigation_and_dedup():
    s = DashboardState()
    s.set_packages([{"id": "zeta", "active_version": 1, "versions": 1},
                    {"id": "alpha", "active_version": 2, "versions": 3}])
    s.set_files([{"name": "a.wasm"}, {"name": "b.json"}])
    assert s.selected_package() == "alpha"
    assert s.handle_key("down") == "package" and s.selected_package() == "zeta"
    assert s.handle_key("down") is None and s.selected_package() == "zeta"  # clamped
    assert s.handle_key("tab") is None and s.focus_name == "files"
    s.handle_key("end")
    assert s.selected["files"] == 1
    assert s.handle_key("shift-tab") is None and s.focus_name == "packages"
    assert s.handle_key("left") is None and s.focus_name == "results"
    assert s.handle_key("r") == "refresh" and s.handle_key("q") == "quit"
    assert s.add_execution(_exec(1)) and s.add_execution(_exec(2)) and not s.add_execution(_exec(1))
    assert [e["seq"] for e in s.results] == [2, 1]
    s.handle_key("down")
    assert s.selected_result()["seq"] == 1
    s.add_execution(_exec(3))  # the selection stays on the same execution
    assert s.selected_result()["seq"] == 1
    s.set_packages([])
    assert s.selected_package() is None and s.selected["packages"] == 0


def test_render_shows_panes_and_keeps_guest_text_inert():
    s = DashboardState(tenant="acme", api_url="http://127.0.0.1:1", connection="live")
    s.set_packages([{"id": "tools", "active_version": 2, "versions": 2}])
    s.package = {"id": "tools", "active_version": 2,
                 "versions": [{"number": 1, "created_at": "2026-01-01T00:00:00Z", "active": False},
                              {"number": 2, "created_at": "2026-01-02T00:00:00Z", "active": True}]}
    s.set_files([{"name": "echo.wasm", "kind": "wasm", "size": 2048}])
    s.add_execution(_exec(1, result=EVIL, logs=[{"level": 3, "message": "[bold]boom\x1b[31m"}]))
    s.focus = 2
    text = _screen(render(s, 120, 30), 120, 30)
    for needle in ("Packages", "tools", "v2", "● active", "Files", "echo.wasm", "2.0 KiB", "Live results",
                   "succeeded", "[red]x[/red]", "[bold]boom", "tenant acme", "live", "q quit"):
        assert needle in text, needle
    assert "pwned" not in text and "\x1b" not in text
    # the raw terminal output has the dashboard's own styles only, never the guest's
    console = Console(width=120, height=30, force_terminal=True, color_system="truecolor", record=False,
                      file=open("/dev/null", "w"))
    with console.capture() as cap:
        console.print(render(s, 120, 30))
    out = cap.get()
    assert "\x1b[2J" not in out and "\x1b]0;" not in out and "[red]x[/red]" in out


def test_render_shows_what_runs_now_with_growing_ages():
    import time
    s = DashboardState(tenant="acme", api_url="http://127.0.0.1:1", connection="live")
    text = _screen(render(s, 120, 40), 120, 40)
    assert "Running now" in text and "nothing is running" in text
    s.set_running({"packages": [{"package": "sleepy", "running": 2, "items": [
        {"id": "01a00000-0000-7000-8000-000000000001", "package": "sleepy", "event": "nap",
         "worker": "w1@host", "attempts": 2, "age_s": 75.0},
        {"id": "01a00000-0000-7000-8000-000000000002", "package": "sleepy", "event": "nap[red]x",
         "worker": "w2@host", "attempts": 1, "age_s": 3.2}]}], "total": 2, "truncated": False},
        at=time.monotonic() - 10)
    text = _screen(render(s, 120, 40), 120, 40)
    for needle in ("Running now (2)", "sleepy/nap", "w1@host", "1m25s", "13.2s", "w2@host", "nap[red]x",
                   "01a00000-000"):
        assert needle in text, (needle, text)


def test_stream_line_logs_and_json_line_are_inert():
    e = _exec(4, result=EVIL, status="failed", code=3, logs=[{"level": 2, "message": "warn \x1b[2J[b]x"}])
    line = execution_line(e)
    assert "[red]x[/red]" in line.plain and "\x1b" not in line.plain and "\n" not in line.plain
    assert "failed" in line.plain and "code=3" in line.plain and e["id"] in line.plain
    assert [t.plain for t in log_lines(e)] == ["    warn warn [b]x"]
    doc = json_line(e)
    assert "\n" not in doc and "\x1b" not in doc and json.loads(doc)["result"] == EVIL
    assert one_line("a\nb" * 50, 10) == "a⏎ba⏎ba⏎b…"


def test_executions_table_readable_in_80_columns():
    items = [_exec(i, created_at="2026-01-01T12:00:01.5Z", duration_ms=1.5) for i in range(3)]
    items.append(_exec(9, package="a-very-long-package-name", event="event_id_1_ok", status="limit_exceeded",
                       dead_lettered=True, code=18446744073709551615))
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(executions_table(items, 80))
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    for e in items:
        assert e["id"] in text  # whole ids, never cut into "…"
    assert "…" not in text and "CODE" in text and "limit_exceeded DL" in text
    # the time column stays on a standard terminal, even with the longest status and code
    assert "CREATED" in text and text.count("12:00:01") == 3  # the fourth has no created_at
    plain = Console(width=80, record=True, file=io.StringIO())
    plain.print(executions_table(items[:3], 80))
    rows = plain.export_text().splitlines()
    assert len(rows) == 4 and all(r.rstrip().endswith("12:00:01") for r in rows[1:]), rows  # one line each
    wide = Console(width=160, record=True, file=io.StringIO())
    wide.print(executions_table(items, 160))
    wide_text = wide.export_text()
    assert "CREATED" in wide_text and " MS" in wide_text
    items[0]["submitter"] = "ci-bot"
    for width, shown in ((120, False), (160, True)):
        console = Console(width=width, record=True, file=io.StringIO())
        console.print(executions_table(items, width))
        text = console.export_text()
        assert all(e["id"] in text for e in items) and all(len(line) <= width for line in text.splitlines())
        assert ("SUBMITTER" in text and "ci-bot" in text) is shown
