"""``jobico executions [filters]`` and ``jobico executions show <id>``."""
import shlex
from typing import Annotated, Any, Optional

from enum import Enum
import typer
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..output import cells, console, info, level_text, print_json, safe, sanitize, status_text, text
from ._common import ApiUrlOpt, JsonOpt, TokenOpt, client, command, remember

STATUSES = ["queued", "running", "succeeded", "failed", "trapped", "timed_out", "limit_exceeded",
            "invalid_module", "cancelled"]
Status = Enum("Status", {s: s for s in STATUSES}, type=str)

executions_app = typer.Typer(help="List executions (newest first), or show one.")


def register(app: typer.Typer) -> None:
    app.add_typer(executions_app, name="executions")


@executions_app.callback(invoke_without_command=True)
def executions(
    ctx: typer.Context,
    package: Annotated[Optional[str], typer.Option("--package", "-p", help="Only this package.",
                                                   show_default=False)] = None,
    event: Annotated[Optional[str], typer.Option("--event", "-e", help="Only this event.",
                                                 show_default=False)] = None,
    status: Annotated[Optional[Status], typer.Option("--status", "-s",
                                                  help="Only executions in this status.",
                                                  show_default=False)] = None,
    submitter: Annotated[Optional[str], typer.Option("--submitter", help="Only those submitted by this key.",
                                                     show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="Page size.")] = 50,
    cursor: Annotated[Optional[str], typer.Option("--cursor", help="Continue from a previous page.",
                                                  show_default=False)] = None,
    json_: JsonOpt = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List executions, newest first (one page; the next page's command is printed).

    \b
      jobico executions --package greet --status failed
      jobico executions show <execution-id>
    """
    remember(api_url, token)
    if ctx.invoked_subcommand is not None:
        return
    status_value = status.value if status is not None else None
    res = client().list_executions(package=package, event=event, status=status_value, submitter=submitter,
                                   limit=limit, cursor=cursor) or {}
    if json_:
        print_json(res)
        return
    items = res.get("items", [])
    if not items:
        info("No executions.")
    else:
        table = Table("ID", "PACKAGE", "VER", "EVENT", "STATUS", "CODE", "CREATED", "MS",
                      box=None, header_style="bold")
        table.columns[0].no_wrap = True
        for e in items:
            table.add_row(*cells([e.get("id"), e.get("package"), e.get("version"), e.get("event"),
                                  status_text(e.get("status"), bool(e.get("dead_lettered"))),
                                  e.get("code"), e.get("created_at"), e.get("duration_ms")]))
        console.print(table)
    nxt = res.get("next_cursor")
    if nxt:
        args = ["jobico", "executions"]
        for flag, value in (("--package", package), ("--event", event), ("--status", status_value),
                            ("--submitter", submitter)):
            if value:
                args += [flag, value]
        if limit != 50:
            args += ["--limit", str(limit)]
        args += ["--cursor", nxt]
        info(f"More: {safe(shlex.join(args))}")


def _field_rows(rec: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    rows: list[tuple[str, Any]] = [
        ("status", status_text(rec.get("status"), bool(rec.get("dead_lettered")))),
        ("package", f"{sanitize(rec.get('package'))} (version {sanitize(rec.get('version'))})"),
        ("event", rec.get("event")), ("tenant", rec.get("tenant")),
        ("code", rec.get("code")), ("limit", rec.get("limit")), ("message", rec.get("message")),
        ("attempts", rec.get("attempts")), ("submitter", rec.get("submitter")),
        ("trigger", rec.get("trigger")), ("worker", rec.get("worker")),
        ("created", rec.get("created_at")), ("started", rec.get("started_at")),
        ("finished", rec.get("finished_at")), ("duration", None if rec.get("duration_ms") is None
                                                 else f"{rec['duration_ms']} ms"),
        ("chained from", rec.get("chained_from")),
    ]
    for name, value in rows:
        if value is None or value == "":
            continue
        grid.add_row(name, value if isinstance(value, Text) else text(value))
    return grid


@command(executions_app, "show")
def show(
    execution_id: Annotated[str, typer.Argument(metavar="ID", help="Execution id.", show_default=False)],
    json_: JsonOpt = False,
) -> None:
    """Show one execution: its record, result, logs (coloured by level), stdout and chain."""
    rec = client().get_execution(execution_id) or {}
    if json_:
        print_json(rec)
        return
    console.print(Panel(_field_rows(rec), title=Text(f"execution {sanitize(rec.get('id', execution_id))}"),
                        title_align="left"))
    if rec.get("payload") not in (None, ""):
        console.print(Panel(text(rec["payload"]), title="payload", title_align="left", border_style="dim"))
    if rec.get("result") is not None:
        console.print(Panel(text(rec["result"]), title="result", title_align="left", border_style="dim"))
    logs = rec.get("logs") or []
    if logs:
        table = Table("LEVEL", "MESSAGE", box=None, header_style="bold", title="Logs", title_justify="left",
                      title_style="bold")
        for record in logs:
            label, style = level_text(record.get("level"))
            table.add_row(label, text(record.get("message"), style))
        console.print(table)
    if rec.get("stdout"):
        console.print(Panel(text(rec["stdout"]), title="stdout", title_align="left", border_style="dim"))
    chain = rec.get("chain") or []
    if chain or rec.get("chained_from"):
        parts = []
        if rec.get("chained_from"):
            parts.append(Text.assemble(("chained from ", "dim"), text(rec["chained_from"])))
        for child in chain:
            parts.append(Text.assemble(("→ ", "dim"), text(child)))
        console.print(Panel(Group(*parts), title="chain", title_align="left", border_style="dim"))
