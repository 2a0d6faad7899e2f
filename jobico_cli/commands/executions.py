"""``jobico executions [filters]`` and ``jobico executions show <id>``."""
import shlex
from enum import Enum
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..client import EXIT_STILL_RUNNING
from ..output import age_text, cells, console, info, level_text, print_json, safe, sanitize, status_text, text
from .common import ApiUrlOpt, JsonOpt, TokenOpt, client, command, plain_errors, remember

STATUSES = ["queued", "running", "succeeded", "failed", "trapped", "timed_out", "limit_exceeded",
            "invalid_module", "cancelled", "superseded"]
Status = Enum("Status", {s: s for s in STATUSES}, type=str)

executions_app = typer.Typer(help="List executions (newest first), show one, what runs now; cancel, resubmit "
                                   "or retry one.")


def register(app: typer.Typer) -> None:
    app.add_typer(executions_app, name="executions")


@executions_app.callback(invoke_without_command=True)
@plain_errors
def executions(
    ctx: typer.Context,
    package: Annotated[str | None, typer.Option("--package", "-p", help="Only this package.",
                                                   show_default=False)] = None,
    event: Annotated[str | None, typer.Option("--event", "-e", help="Only this event.",
                                                 show_default=False)] = None,
    status: Annotated[Status | None, typer.Option("--status", "-s",
                                                  help="Only executions in this status.",
                                                  show_default=False)] = None,
    submitter: Annotated[str | None, typer.Option("--submitter", help="Only those of this submitter: a key's name, "
                                                     "the value of the tenant's submitter header, cron, "
                                                     "mqtt:<topic> or chain.",
                                                     show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="Page size.")] = 50,
    cursor: Annotated[str | None, typer.Option("--cursor", help="Continue from a previous page.",
                                                  show_default=False)] = None,
    json_: JsonOpt = False,
    api_url: ApiUrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List executions, newest first (one page; the next page's command is printed).

    \b
      jobico executions --package greet --status failed
      jobico executions --submitter cron
      jobico executions show <execution-id>
      jobico executions running
      jobico executions cancel <execution-id>
      jobico executions resubmit <execution-id>
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
        table = executions_table(items, console.width)
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


WIDE = 120  # from this width on, every column; below it the ids stay whole and less useful columns go
WIDER = 140  # ... and the submitter too
NARROWEST_WITH_TIME = 80  # a standard terminal still shows when each execution was created
NAME_MIN_WIDTH = 5  # PACKAGE@VER and EVENT fold into columns this narrow rather than push the time out


def _created(value: Any, wide: bool) -> str:
    s = sanitize(value)
    if not wide and len(s) >= 19:
        return s[11:19]  # HH:MM:SS
    return s[:19].replace("T", " ") if len(s) >= 19 else s


def executions_table(items: list[dict], width: int) -> Table:
    """The listing: whole ids always (copy them into `jobico executions show`), columns dropped when narrow.

    >= 120 columns: ID PACKAGE VER EVENT STATUS CODE CREATED MS (and SUBMITTER from 140 on); narrower: ID PACKAGE@VER
    EVENT STATUS (" DL": dead-lettered) CODE CREATED (HH:MM:SS; from 80 columns on), long names folded rather
    than cut: the whole id, the status and the time keep their width, CODE shrinks to 4, the names share the rest.
    """
    wide = width >= WIDE
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 1), collapse_padding=True)
    table.add_column("ID", no_wrap=True, min_width=36)
    show_created = width >= NARROWEST_WITH_TIME
    if wide:
        table.add_column("PACKAGE", overflow="fold")
        table.add_column("VER", justify="right")
        table.add_column("EVENT", overflow="fold")
        table.add_column("STATUS", no_wrap=True)
        table.add_column("CODE", overflow="fold", justify="right")
    else:
        # fixed widths: rich would otherwise squeeze the last columns away
        status_w = max([6] + [len(sanitize(e.get("status"))) + (3 if e.get("dead_lettered") else 0)
                              for e in items])
        fixed = 36 + status_w + (9 if show_created else 0) + 5  # 5: one space between six columns
        names_min = 2 * NAME_MIN_WIDTH
        code_w = max(4, min(max([4] + [len(sanitize(e.get("code"))) for e in items]), 10, width - fixed - names_min))
        rest = width - fixed - code_w
        pkg_w = max(NAME_MIN_WIDTH, min(max([7] + [len(sanitize(e.get("package"))) + 3 + len(str(e.get("version")))
                                                   for e in items]), rest // 2))
        ev_w = max(NAME_MIN_WIDTH, rest - pkg_w)
        table.add_column("PACKAGE", overflow="fold", width=pkg_w)
        table.add_column("EVENT", overflow="fold", width=ev_w)
        table.add_column("STATUS", no_wrap=True, width=status_w)
        table.add_column("CODE", overflow="fold", justify="right", width=code_w)
    if show_created:
        table.add_column("CREATED", no_wrap=True)
    if wide:
        table.add_column("MS", justify="right")
    wider = width >= WIDER
    if wider:
        table.add_column("SUBMITTER", overflow="fold")
    for e in items:
        row: list[Any] = [e.get("id")]
        if wide:
            row += [e.get("package"), e.get("version")]
        else:
            row.append(f"{sanitize(e.get('package'))}@v{sanitize(e.get('version'))}")
        if wide:
            status = status_text(e.get("status"), bool(e.get("dead_lettered")))
        else:
            status = status_text(e.get("status"))
            if e.get("dead_lettered"):
                status.append(" DL", style="dim")
        row += [e.get("event"), status, e.get("code")]
        if show_created:
            row.append(_created(e.get("created_at"), wide))
        if wide:
            row.append(e.get("duration_ms"))
        if wider:
            row.append(e.get("submitter"))
        table.add_row(*cells(row))
    return table


def _flow_text(flow: Any) -> str | None:
    """An execution's flow control in one line: ``concurrency acme (limit 2); debounce d1 (3 s)``."""
    if not isinstance(flow, dict) or not flow:
        return None
    parts = []
    for name, f in flow.items():
        if not isinstance(f, dict):
            continue
        detail = {"concurrency": f"limit {f.get('limit')}", "debounce": f"{f.get('seconds')} s",
                  "rate_limit": f"{f.get('per_second')}/s, burst {f.get('burst')}"}.get(name, "")
        parts.append(f"{name} {f.get('key')!r} ({detail})")
    return "; ".join(parts) or None


def _field_rows(rec: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    rows: list[tuple[str, Any]] = [
        ("status", status_text(rec.get("status"), bool(rec.get("dead_lettered")))),
        ("package", f"{sanitize(rec.get('package'))} (version {sanitize(rec.get('version'))})"),
        ("event", rec.get("event")), ("tenant", rec.get("tenant")),
        ("code", rec.get("code")), ("limit", rec.get("limit")), ("message", rec.get("message")),
        ("locks", ", ".join(rec["locks"]) if rec.get("locks") else None), ("flow control", _flow_text(rec.get("flow"))),
        ("priority", rec.get("priority")), ("superseded by", rec.get("superseded_by")),
        ("waiting for", rec.get("waiting_for")),
        ("attempts", rec.get("attempts")), ("submitter", rec.get("submitter")),
        ("trigger", rec.get("trigger")), ("scheduled", rec.get("scheduled_at")), ("worker", rec.get("worker")),
        ("created", rec.get("created_at")), ("started", rec.get("started_at")),
        ("finished", rec.get("finished_at")), ("duration", None if rec.get("duration_ms") is None
                                                 else f"{rec['duration_ms']} ms"),
        ("chained from", rec.get("chained_from")),
        ("resubmitted from", rec.get("resubmitted_from")), ("cancelled by", rec.get("cancelled_by")),
        ("trace", rec.get("trace_id")),
        ("resubmissions", ", ".join(str(i) for i in rec.get("resubmissions") or []) or None),
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


@command(executions_app, "retry")
def retry(
    execution_id: Annotated[str, typer.Argument(metavar="ID", help="A dead-lettered execution's id.",
                                                show_default=False)],
    json_: JsonOpt = False,
) -> None:
    """Replay a dead-lettered execution (same id and payload; its attempts carry on)."""
    rec = client().retry_execution(execution_id) or {}
    if json_:
        print_json(rec)
        return
    console.print(Text.assemble("queued again: ", text(rec.get("id", execution_id)),
                                (f" (attempts so far: {rec.get('attempts')})", "dim")))


CANCEL_STYLES = {"cancelled_queued": "green", "cancelled_running": "green", "already_finished": "dim",
                 "requested": "yellow"}


@command(executions_app, "cancel")
def cancel(
    execution_id: Annotated[str, typer.Argument(metavar="ID", help="Execution id.", show_default=False)],
    wait: Annotated[float, typer.Option("--wait", min=0, max=30, metavar="S",
                                        help="Seconds to wait for a running execution to stop (0: do not "
                                             "wait).")] = 5.0,
    json_: JsonOpt = False,
) -> None:
    """Cancel an execution: a queued one never starts; a running one is stopped inside its sandbox
    and recorded cancelled (at once if its worker is lost). Its ok/error chain is not fired and it
    is not retried. Cancelling a finished execution changes nothing.

    \b
    Exit codes:
      0  cancelled, or already finished (nothing to cancel)
      4  still running when --wait ran out (the cancel stands:
         its worker stops it when the request reaches it; if its
         worker is lost or does not act, it is recorded cancelled
         within 1.5 x JOBICO_EXECUTION_LEASE_SECONDS)
      1  refused (e.g. no such execution)
      2  usage error;  3  API unreachable
    """
    rec = client().cancel_execution(execution_id, wait) or {}
    if json_:
        print_json(rec)
    else:
        outcome = str(rec.get("cancel") or "")
        console.print(text(rec.get("detail") or outcome, CANCEL_STYLES.get(outcome, "")), soft_wrap=True)
        console.print(Text.assemble(("status ", "dim"), status_text(rec.get("status")),
                                    ("  cancel took ", "dim"), text(f"{rec.get('cancel_ms')} ms")))
    if rec.get("cancel") == "requested":
        raise typer.Exit(EXIT_STILL_RUNNING)


@command(executions_app, "resubmit")
def resubmit(
    execution_id: Annotated[str, typer.Argument(metavar="ID", help="Execution id (any status).",
                                                show_default=False)],
    json_: JsonOpt = False,
) -> None:
    """Run an execution's payload again: a new execution of the same event, on the package's
    active version (checked against its current schema), linked to the old one
    (resubmitted_from; the old one lists it under resubmissions)."""
    rec = client().resubmit_execution(execution_id) or {}
    if json_:
        print_json(rec)
        return
    console.print(Text.assemble("resubmitted ", text(execution_id), " as ", text(rec.get("id"), "bold"),
                                (f" ({sanitize(rec.get('package'))} version {sanitize(rec.get('version'))}, "
                                 f"{sanitize(rec.get('status'))})", "dim")), soft_wrap=True)


def running_table(doc: dict) -> Table:
    """One block per package: its running executions, oldest first."""
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 1), collapse_padding=True)
    for name, kw in (("ID", {"no_wrap": True, "min_width": 36}), ("EVENT", {"overflow": "fold"}),
                     ("WORKER", {"overflow": "fold"}), ("ATTEMPT", {"justify": "right"}),
                     ("AGE", {"justify": "right", "no_wrap": True}), ("SUBMITTER", {"overflow": "fold"})):
        table.add_column(name, **kw)
    for group in doc.get("packages") or []:
        claimed = f", {sanitize(group.get('claimed'))} claimed behind them" if group.get("claimed") else ""
        table.add_row(Text.assemble(text(group.get("package"), "bold"),
                                    (f"  {sanitize(group.get('running'))} running{claimed}", "dim")))
        for e in group.get("items") or []:
            table.add_row(*cells([e.get("id"), e.get("event"), e.get("worker"), e.get("attempts"),
                                  age_text(e.get("age_s")), e.get("submitter")]))
    return table


@command(executions_app, "running")
def running(
    package: Annotated[str | None, typer.Option("--package", "-p", help="Only this package.",
                                                   show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="At most this many.")] = 200,
    json_: JsonOpt = False,
) -> None:
    """What runs now, per package: each execution's worker, attempt and age (GET /api/v1/executions/running).

    A batch task runs its executions one at a time: the one it runs is listed; the others it
    claimed (their status says running) are counted as "claimed behind them".
    """
    doc = client().running_executions(package=package, limit=limit) or {}
    if json_:
        print_json(doc)
        return
    if not doc.get("packages"):
        info("Nothing is running.")
        return
    console.print(running_table(doc))
    if doc.get("truncated"):
        info(f"Only the first {limit} are shown: --limit shows more, --package narrows it down.")
