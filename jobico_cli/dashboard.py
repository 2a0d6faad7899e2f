"""``jobico dashboard``: a full-screen terminal UI over the API (rich ``Live`` on the alternate screen).

Panes: packages (and the selected package's versions), the repository's
files, the live stream of results (``GET /api/v1/executions/stream``)
with the selected result's details, and what runs now
(``GET /api/v1/executions/running``: worker, attempt, age). Keys: tab / shift-tab (or ←/→) move
between panes, ↑/↓ (j/k), PgUp/PgDn, Home/End move within one, ``r``
refreshes, ``q`` (or Ctrl-C) quits and restores the terminal.

The state (``DashboardState``) and the rendering (``render``) are plain
functions of data, tested without a terminal; ``run`` wires them to a
terminal in cbreak mode, a refresher thread (packages, versions, files every
``refresh`` seconds and on ``r``, the running executions too) and a stream thread (``ExecutionStream``).
Everything a tenant's module produced is shown through ``output.text`` /
``one_line``: sanitized, never parsed as markup.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .client import Client, CliError, UsageProblem
from .output import age_text, human_size, level_text, one_line, sanitize, short, status_text, text

PANES = ("packages", "files", "results")
MAX_RESULTS = 500


@dataclass
class DashboardState:
    tenant: str = ""
    api_url: str = ""
    packages: list[dict] = field(default_factory=list)
    package: dict | None = None  # GET /packages/<selected>: its versions
    files: list[dict] = field(default_factory=list)
    results: deque = field(default_factory=lambda: deque(maxlen=MAX_RESULTS))  # newest first
    running: list[dict] = field(default_factory=list)  # GET /executions/running, flattened
    running_total: int = 0
    running_at: float = 0.0  # time.monotonic() of that answer: ages grow from there
    seen: set = field(default_factory=set)
    focus: int = 0
    selected: dict = field(default_factory=lambda: {p: 0 for p in PANES})
    connection: str = "connecting"
    message: str = ""
    refreshed_at: str = ""

    # -- data -------------------------------------------------------------------
    def set_packages(self, items: list[dict]) -> None:
        self.packages = sorted(items, key=lambda p: str(p.get("id")))
        self._clamp("packages")

    def set_files(self, items: list[dict]) -> None:
        self.files = sorted(items, key=lambda f: str(f.get("name")))
        self._clamp("files")

    def set_running(self, doc: dict, at: float | None = None) -> None:
        self.running = [e for g in doc.get("packages") or [] for e in g.get("items") or []]
        self.running_total = int(doc.get("total") or len(self.running))
        self.running_at = time.monotonic() if at is None else at

    def add_execution(self, e: dict) -> bool:
        """Add a streamed execution (newest first); False when already shown."""
        eid = e.get("id")
        if not eid or eid in self.seen:
            return False
        if len(self.results) == self.results.maxlen:
            self.seen.discard(self.results[-1].get("id"))
        self.seen.add(eid)
        self.results.appendleft(e)
        # keep the selection on the same execution unless the newest one was selected
        if self.focus_name == "results" and self.selected["results"] > 0:
            self.selected["results"] = min(self.selected["results"] + 1, len(self.results) - 1)
        return True

    # -- selection --------------------------------------------------------------
    @property
    def focus_name(self) -> str:
        return PANES[self.focus]

    def rows(self, pane: str) -> int:
        return len({"packages": self.packages, "files": self.files, "results": self.results}[pane])

    def _clamp(self, pane: str) -> None:
        n = self.rows(pane)
        self.selected[pane] = max(0, min(self.selected[pane], n - 1)) if n else 0

    def selected_package(self) -> str | None:
        if not self.packages:
            return None
        return self.packages[self.selected["packages"]].get("id")

    def selected_result(self) -> dict | None:
        if not self.results:
            return None
        return self.results[self.selected["results"]]

    def move(self, delta: int) -> None:
        pane = self.focus_name
        n = self.rows(pane)
        if n:
            self.selected[pane] = max(0, min(self.selected[pane] + delta, n - 1))

    def handle_key(self, key: str) -> str | None:
        """Apply a key; returns an action for the caller: "quit", "refresh", "package" (selection changed)."""
        before = self.selected_package()
        if key in ("q", "Q", "ctrl-c", "escape"):
            return "quit"
        if key in ("r", "R", "f5"):
            return "refresh"
        if key in ("tab", "right", "l"):
            self.focus = (self.focus + 1) % len(PANES)
        elif key in ("shift-tab", "left", "h"):
            self.focus = (self.focus - 1) % len(PANES)
        elif key in ("up", "k"):
            self.move(-1)
        elif key in ("down", "j"):
            self.move(1)
        elif key == "pageup":
            self.move(-10)
        elif key == "pagedown":
            self.move(10)
        elif key in ("home", "g"):
            self.move(-10 ** 9)
        elif key in ("end", "G"):
            self.move(10 ** 9)
        if self.selected_package() != before:
            return "package"
        return None


# -- keys ------------------------------------------------------------------------
_SEQUENCES = {
    "\x1b[A": "up", "\x1b[B": "down", "\x1b[C": "right", "\x1b[D": "left",
    "\x1bOA": "up", "\x1bOB": "down", "\x1bOC": "right", "\x1bOD": "left",
    "\x1b[Z": "shift-tab", "\x1b[5~": "pageup", "\x1b[6~": "pagedown",
    "\x1b[H": "home", "\x1b[F": "end", "\x1bOH": "home", "\x1bOF": "end",
    "\x1b[1~": "home", "\x1b[4~": "end", "\x1b[15~": "f5",
}


def parse_keys(data: str) -> list[str]:
    """Key names in a chunk read from a terminal in cbreak mode."""
    keys: list[str] = []
    i = 0
    while i < len(data):
        ch = data[i]
        if ch == "\x1b":
            for seq in sorted(_SEQUENCES, key=len, reverse=True):
                if data.startswith(seq, i):
                    keys.append(_SEQUENCES[seq])
                    i += len(seq)
                    break
            else:
                if i + 1 < len(data) and data[i + 1] == "[":  # an unknown CSI: skip it whole
                    j = i + 2
                    while j < len(data) and not ("@" <= data[j] <= "~"):
                        j += 1
                    i = j + 1
                else:
                    keys.append("escape")
                    i += 1
            continue
        keys.append({"\t": "tab", "\r": "enter", "\n": "enter", "\x03": "ctrl-c"}.get(ch, ch))
        i += 1
    return keys


# -- rendering -------------------------------------------------------------------
def _window(n: int, selected: int, height: int) -> range:
    height = max(1, height)
    start = max(0, min(selected - height // 2, n - height))
    return range(start, min(n, start + height))


def _pane(title: str, body: RenderableType, focused: bool, extra: str = "") -> Panel:
    t = Text(title, style="bold")
    if extra:
        t.append(f" {extra}", style="dim")
    return Panel(body, title=t, title_align="left", border_style="bold cyan" if focused else "grey50",
                 padding=(0, 1))


def _row_style(state: DashboardState, pane: str, i: int) -> str:
    if i != state.selected[pane]:
        return ""
    return "reverse" if state.focus_name == pane else "bold"


def _packages_table(state: DashboardState, height: int) -> RenderableType:
    if not state.packages:
        return Text("no packages yet: jobico deploy <package.yaml>", style="dim")
    table = Table("PACKAGE", "ACTIVE", "VERSIONS", box=None, header_style="bold", expand=True, pad_edge=False)
    for i in _window(len(state.packages), state.selected["packages"], height - 1):
        p = state.packages[i]
        table.add_row(text(p.get("id")), text(f"v{sanitize(p.get('active_version'))}"),
                      text(p.get("versions")), style=_row_style(state, "packages", i))
    return table


def _versions_table(state: DashboardState, height: int) -> RenderableType:
    pkg = state.package
    if not pkg or pkg.get("id") != state.selected_package():
        return Text("…" if state.selected_package() else "", style="dim")
    versions = sorted(pkg.get("versions") or [], key=lambda v: -int(v.get("number") or 0))
    table = Table("VERSION", "CREATED", "", box=None, header_style="bold", expand=True, pad_edge=False)
    for v in versions[:max(1, height - 1)]:
        active = v.get("active") or v.get("number") == pkg.get("active_version")
        table.add_row(text(f"v{sanitize(v.get('number'))}"), text(str(v.get("created_at") or "")[:19]),
                      Text("● active", style="green") if active else Text(""))
    return table


def _files_table(state: DashboardState, height: int) -> RenderableType:
    if not state.files:
        return Text("no files yet: jobico upload <file>", style="dim")
    table = Table("FILE", "KIND", "SIZE", box=None, header_style="bold", expand=True, pad_edge=False)
    for i in _window(len(state.files), state.selected["files"], height - 1):
        f = state.files[i]
        table.add_row(text(f.get("name")), text(f.get("kind")), text(human_size(f.get("size"))),
                      style=_row_style(state, "files", i))
    return table


def _results_table(state: DashboardState, height: int, width: int) -> RenderableType:
    if not state.results:
        return Text("waiting for executions to finish…", style="dim")
    table = Table("TIME", "STATUS", "CODE", "EVENT", "RESULT", box=None, header_style="bold", expand=True,
                  pad_edge=False)
    table.columns[4].overflow = "ellipsis"
    table.columns[4].no_wrap = True
    result_w = max(10, width - 50)
    for i in _window(len(state.results), state.selected["results"], height - 1):
        e = state.results[i]
        finished = str(e.get("finished_at") or "")
        table.add_row(text(finished[11:19]), status_text(e.get("status")),
                      text("-" if e.get("code") is None else e.get("code")),
                      text(f"{sanitize(e.get('package'))}/{sanitize(e.get('event'))}"),
                      Text(one_line(e.get("result") if e.get("result") is not None else e.get("message") or "",
                                    result_w)),
                      style=_row_style(state, "results", i))
    return table


def _running_table(state: DashboardState, height: int) -> RenderableType:
    if not state.running:
        return Text("nothing is running", style="dim")
    since = max(0.0, time.monotonic() - state.running_at) if state.running_at else 0.0
    table = Table(box=None, header_style="bold", expand=True, pad_edge=False)
    table.add_column("PACKAGE/EVENT", overflow="ellipsis", no_wrap=True, ratio=2)
    table.add_column("WORKER", overflow="ellipsis", no_wrap=True, ratio=1)
    table.add_column("ATTEMPT", justify="right", no_wrap=True)
    table.add_column("AGE", justify="right", no_wrap=True)
    table.add_column("ID", no_wrap=True)
    for e in state.running[:max(1, height - 1)]:
        age = e.get("age_s")
        table.add_row(text(f"{sanitize(e.get('package'))}/{sanitize(e.get('event'))}"), text(e.get("worker")),
                      text(e.get("attempts")), text(age_text(age + since if isinstance(age, (int, float)) else None)),
                      text(short(e.get("id"))))
    return table


def _detail(state: DashboardState, height: int) -> RenderableType:
    e = state.selected_result()
    if e is None:
        return Text("")
    parts: list[RenderableType] = [
        Text.assemble(("id ", "dim"), text(e.get("id")), ("  v", "dim"), text(e.get("version")),
                      ("  attempts ", "dim"), text(e.get("attempts")),
                      ("  ", ""), ("limit " if e.get("limit") else "", "dim"), text(e.get("limit") or "")),
        Text.assemble(("result ", "dim"), text(one_line(e.get("result"), 400) if e.get("result") is not None
                                               else "(none)")),
    ]
    if e.get("message"):
        parts.append(Text.assemble(("message ", "dim"), Text(one_line(e.get("message"), 400))))
    for record in (e.get("logs") or [])[:max(0, height - 4)]:
        label, style = level_text(record.get("level"))
        parts.append(Text.assemble(("log ", "dim"), label, " ", Text(one_line(record.get("message"), 300), style)))
    if e.get("stdout"):
        parts.append(Text.assemble(("stdout ", "dim"), Text(one_line(e.get("stdout"), 300))))
    return Group(*parts)


def render(state: DashboardState, width: int = 120, height: int = 40) -> Layout:
    """The whole screen for a terminal of ``width`` x ``height``."""
    body_h = max(10, height - 2)
    pk_h = max(5, int(body_h * 0.38))
    ver_h = max(4, int(body_h * 0.24))
    files_h = max(4, body_h - pk_h - ver_h)
    detail_h = max(6, min(12, body_h // 3))
    running_h = max(4, min(8, body_h // 5))
    results_h = max(4, body_h - detail_h - running_h)
    left_w = max(30, int(width * 0.38))

    header = Text.assemble(("Jobico", "bold cyan"), "  tenant ", (sanitize(state.tenant), "bold"),
                           "  ", (sanitize(state.api_url), "dim"), "  stream: ")
    header.append(sanitize(state.connection),
                  style="green" if state.connection == "live" else "yellow")
    header.append(f"  {len(state.results)} results", style="dim")
    if state.refreshed_at:
        header.append(f"  refreshed {state.refreshed_at}", style="dim")
    footer = Text.assemble(("tab", "bold"), "/", ("←→", "bold"), " pane  ", ("↑↓", "bold"), " row  ",
                           ("r", "bold"), " refresh  ", ("q", "bold"), " quit  ")
    if state.message:
        footer.append(one_line(state.message, max(10, width - 40)), style="yellow")

    layout = Layout()
    layout.split_column(Layout(header, name="header", size=1), Layout(name="body"),
                        Layout(footer, name="footer", size=1))
    left, right = Layout(name="left", size=left_w), Layout(name="right")
    layout["body"].split_row(left, right)
    selected = state.selected_package()
    left.split_column(
        Layout(_pane("Packages", _packages_table(state, pk_h - 2), state.focus_name == "packages",
                     f"({len(state.packages)})"), size=pk_h),
        Layout(_pane("Versions", _versions_table(state, ver_h - 2), False,
                     f"of {sanitize(selected)}" if selected else ""), size=ver_h),
        Layout(_pane("Files", _files_table(state, files_h - 2), state.focus_name == "files",
                     f"({len(state.files)})")),
    )
    right.split_column(
        Layout(_pane("Live results", _results_table(state, results_h - 2, width - left_w - 4),
                     state.focus_name == "results", "(newest first)"), size=results_h),
        Layout(_pane("Running now", _running_table(state, running_h - 2), False,
                     f"({state.running_total})"), size=running_h),
        Layout(_pane("Selected result", _detail(state, detail_h - 2), False), name="detail"),
    )
    return layout


# -- the terminal app ------------------------------------------------------------
class Dashboard:
    def __init__(self, client: Client, refresh: float = 5.0, console: Console | None = None):
        self.client = client
        self.refresh_every = refresh
        self.console = console or Console(highlight=False)
        self.state = DashboardState(api_url=client.base_url)
        self.lock = threading.Lock()
        self.dirty = threading.Event()
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.stream = None

    def _update(self, fn: Callable[[DashboardState], Any]) -> None:
        with self.lock:
            fn(self.state)
        self.dirty.set()

    def refresh_once(self) -> None:
        try:
            packages = (self.client.list_packages() or {}).get("items", [])
            files = (self.client.list_files() or {}).get("items", [])
            running = self.client.running_executions(limit=50) or {}
            self._update(lambda s: (s.set_packages(packages), s.set_files(files), s.set_running(running)))
            selected = self.state.selected_package()
            detail = self.client.get_package(selected) if selected else None
            stamp = time.strftime("%H:%M:%S")

            def apply(s: DashboardState) -> None:
                s.package = detail
                s.refreshed_at = stamp
                if s.message.startswith("refresh failed"):
                    s.message = ""
            self._update(apply)
        except CliError as exc:
            msg = f"refresh failed: {exc.format_message()}"
            self._update(lambda s, msg=msg: setattr(s, "message", msg))
        except Exception as exc:  # never let the thread die
            msg = f"refresh failed: {type(exc).__name__}: {exc}"
            self._update(lambda s: setattr(s, "message", msg))

    def _refresher(self) -> None:
        while not self.stop.is_set():
            self.refresh_once()
            self.wake.wait(self.refresh_every)
            self.wake.clear()

    def _streamer(self) -> None:
        from .stream import ExecutionStream

        def on_state(state: str) -> None:
            self._update(lambda s: setattr(s, "connection", "live" if state == "connected" else state))
        while not self.stop.is_set():
            self.stream = ExecutionStream(self.client, recent=50, follow=True, on_state=on_state)
            try:
                for e in self.stream:
                    self._update(lambda s, e=e: s.add_execution(e))
                    if self.stop.is_set():
                        return
            except CliError as exc:
                msg = exc.format_message()
                self._update(lambda s, msg=msg: (setattr(s, "connection", "down"), setattr(s, "message", msg)))
                self.stop.wait(3)
            except Exception as exc:
                msg = f"stream: {type(exc).__name__}: {exc}"
                self._update(lambda s, msg=msg: setattr(s, "message", msg))
                self.stop.wait(3)

    def run(self) -> None:
        me = self.client.whoami() or {}
        if me.get("admin") or not me.get("tenant"):
            raise CliError("the dashboard shows a tenant's data: use a tenant key (--token or JOBICO_TOKEN), "
                           "not the admin token")
        self.state.tenant = me["tenant"]
        fd = sys.stdin.fileno()
        import termios
        import tty
        old_attrs = termios.tcgetattr(fd)
        old_term = signal.getsignal(signal.SIGTERM)

        def on_term(signum, frame):
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, on_term)
        for target in (self._refresher, self._streamer):
            threading.Thread(target=target, daemon=True, name=f"dashboard-{target.__name__}").start()
        try:
            tty.setcbreak(fd, termios.TCSANOW)
            with Live(console=self.console, screen=True, auto_refresh=False, transient=True,
                      redirect_stdout=False, redirect_stderr=False) as live:
                last = 0.0
                while True:
                    ready, _, _ = select.select([fd], [], [], 0.1)
                    if ready:
                        data = os.read(fd, 256).decode("utf-8", "replace")
                        if not data:
                            break
                        quit_ = False
                        for key in parse_keys(data):
                            with self.lock:
                                action = self.state.handle_key(key)
                            if action == "quit":
                                quit_ = True
                                break
                            if action in ("refresh", "package"):
                                self.wake.set()
                            self.dirty.set()
                        if quit_:
                            break
                    now = time.monotonic()
                    if self.dirty.is_set() or now - last >= 1.0:
                        self.dirty.clear()
                        w, h = self.console.size
                        with self.lock:
                            screen = render(self.state, w, h)
                        live.update(screen, refresh=True)
                        last = now
        except KeyboardInterrupt:
            pass
        finally:
            self.stop.set()
            self.wake.set()
            if self.stream is not None:
                self.stream.close()
            termios.tcsetattr(fd, termios.TCSADRAIN, old_attrs)
            signal.signal(signal.SIGTERM, old_term)


def run(client: Client, refresh: float = 5.0) -> None:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageProblem("the dashboard needs a terminal (stdin and stdout must be a TTY)")
    Dashboard(client, refresh=refresh).run()
