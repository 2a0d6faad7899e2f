"""``jobico rejections``: events a trigger without a caller (MQTT) could not accept, and why."""
import shlex
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table

from ..output import console, info, one_line, print_json, safe, text
from .common import Commands, JsonOpt, client

REASONS = ["bad_request", "too_large", "invalid", "not_deployed"]
Reason = Enum("Reason", {r: r for r in REASONS}, type=str)


commands = Commands()


@commands("rejections")
def rejections(
    event: Annotated[str | None, typer.Option("--event", "-e", help="Only this event.",
                                                 show_default=False)] = None,
    reason: Annotated[Reason | None, typer.Option("--reason", "-r", help="Only this reason.",
                                                     show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500, help="Page size.")] = 50,
    cursor: Annotated[str | None, typer.Option("--cursor", help="Continue from a previous page.",
                                                  show_default=False)] = None,
    json_: JsonOpt = False,
) -> None:
    """List rejected events, newest first: MQTT messages that were not JSON, too large, did not
    match the event's schema, or arrived on a topic no deployed event takes (kept 7 days).

    \b
      jobico rejections
      jobico rejections --event reading --reason invalid --json
    """
    reason_value = reason.value if reason is not None else None
    res = client().list_rejections(event=event, reason=reason_value, limit=limit, cursor=cursor) or {}
    if json_:
        print_json(res)
        return
    items = res.get("items", [])
    if not items:
        info("No rejected events.")
    else:
        table = Table(show_edge=False, pad_edge=False)
        for col in ("WHEN", "EVENT", "TOPIC", "REASON", "MESSAGE"):
            table.add_column(col, overflow="fold" if col == "MESSAGE" else "ellipsis")
        for r in items:
            table.add_row(text(r.get("created_at", "")), text(r.get("event") or "-"), text(r.get("source")),
                          text(r.get("reason"), "red"), text(one_line(r.get("message"), 120)))
        console.print(table)
    nxt = res.get("next_cursor")
    if nxt:
        args = ["jobico", "rejections"]
        for flag, value in (("--event", event), ("--reason", reason_value)):
            if value:
                args += [flag, value]
        if limit != 50:
            args += ["--limit", str(limit)]
        info(f"More: {safe(shlex.join(args + ['--cursor', nxt]))}")


def register(app: typer.Typer) -> None:
    commands.register(app)
