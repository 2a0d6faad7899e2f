"""``jobico stream <package> [--logs] [--follow] [--json]`` (also under the original's name,
``stream-from-recorder``) and ``jobico dashboard``."""

import sys
from typing import Annotated, Any

import typer
from rich.text import Text

from ..output import console, err_console, json_line, level_text, one_line, sanitize, status_text, text
from ..stream import ExecutionStream
from .common import Commands, client
from .executions import Status


def execution_line(e: dict, result_width: int = 60) -> Text:
    """One line for a finished execution: time, status (coloured), code, package@version/event, result, id."""
    finished = str(e.get("finished_at") or e.get("created_at") or "")
    clock = finished[11:19] if len(finished) >= 19 else finished
    line = Text.assemble(
        (sanitize(clock), "dim"), "  ",
        status_text(e.get("status"), bool(e.get("dead_lettered"))), "  ",
        ("code=", "dim"), text("-" if e.get("code") is None else e.get("code")), "  ",
        text(f"{sanitize(e.get('package'))}@v{sanitize(e.get('version'))}/{sanitize(e.get('event'))}", "bold"),
        "  ",
    )
    if e.get("result") is not None:
        line.append(one_line(e.get("result"), result_width))
    elif e.get("message"):
        line.append(one_line(e.get("message"), result_width), style="dim")
    elif e.get("limit"):
        line.append(f"limit: {one_line(e.get('limit'), 20)}", style="dim")
    line.append("  ")
    line.append(sanitize(e.get("id")), style="dim")
    return line


def log_lines(e: dict) -> list[Text]:
    out = []
    for record in e.get("logs") or []:
        label, style = level_text(record.get("level"))
        out.append(Text.assemble("    ", label, " ", text(record.get("message"), style)))
    return out


def _print(renderable: Any) -> None:
    console.print(renderable, soft_wrap=True, highlight=False)
    console.file.flush()


JsonLinesOpt = Annotated[bool, typer.Option("--json", help="Print JSON Lines: one JSON object per execution, "
                                            "one per line, logs included (for jq and scripts).")]


commands = Commands()


@commands("stream-from-recorder",  # the original Jobico's name, kept for its users' scripts
          help="The same as `jobico stream` (the original Jobico's name for it).")
@commands("stream")   # (the lower decorator registers first: `stream` is listed first)
def stream_executions(
    package: Annotated[str, typer.Argument(help="Package id.", show_default=False)],
    logs: Annotated[bool, typer.Option("--logs", help="Also print each execution's log records.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming as executions finish "
                                         "(reconnects by itself); Ctrl-C stops.")] = False,
    event: Annotated[str | None, typer.Option("--event", "-e", help="Only this event.",
                                                 show_default=False)] = None,
    status: Annotated[Status | None, typer.Option("--status", "-s", help="Only this status.",
                                                  show_default=False)] = None,
    recent: Annotated[int, typer.Option("--recent", "-n", min=0, max=500,
                                        help="How many recent finished executions to show first.")] = 20,
    json_: JsonLinesOpt = False,
) -> None:
    """Print a package's finished executions from the live stream, one line each.

    Without --follow: the recent ones, then exit. With --follow: keep printing each execution
    as it finishes. --json prints one JSON object per line (JSON Lines), logs included.

    \b
      jobico stream hello --follow --logs
      jobico stream hello --json | jq .result
    """
    c = client()
    c.get_package(package)  # an unknown package is refused (exit 1), not an empty stream
    if not json_ and follow and sys.stderr.isatty():
        err_console.print(f"[dim]Streaming {package}'s executions (Ctrl-C to stop)…[/dim]",
                          markup=True, highlight=False)

    def on_state(state: str) -> None:
        if state == "reconnecting":
            err_console.print("[dim]connection lost; reconnecting…[/dim]")

    stream = ExecutionStream(c, package=package, event=event, status=status.value if status else None,
                             recent=recent, follow=follow, on_state=on_state)
    try:
        for e in stream:
            if json_:
                sys.stdout.write(json_line(e) + "\n")
                sys.stdout.flush()
                continue
            _print(execution_line(e))
            if logs:
                for line in log_lines(e):
                    _print(line)
    except KeyboardInterrupt:
        stream.close()
        raise typer.Exit(0) from None


@commands("dashboard")
def dashboard(
    refresh: Annotated[float, typer.Option("--refresh", min=0.5, help="Seconds between refreshes of "
                                           "packages and files.")] = 5.0,
) -> None:
    """Full-screen terminal dashboard: packages and versions, repository files, live results.

    Keys: tab / shift-tab (or ←/→) switch pane, ↑/↓ (or j/k) move, r refresh, q quit.
    """
    from ..dashboard import run
    run(client(), refresh=refresh)


def register(app: typer.Typer) -> None:
    commands.register(app)
