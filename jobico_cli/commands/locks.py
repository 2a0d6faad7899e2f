"""``jobico locks``: the tenant's named locks and concurrency keys, who holds each and who waits for it."""
from typing import Annotated

import typer
from rich.table import Table

from ..output import console, info, print_json, text
from .common import Commands, JsonOpt, client

commands = Commands()


@commands("locks")
def locks(
    all_waiting: Annotated[bool, typer.Option("--all-waiting", help="List every waiting execution, not the "
                                                             "first three.")] = False,
    json_: JsonOpt = False,
) -> None:
    """List the named locks (an event's locks:) and concurrency keys (concurrency:) held or
    waited for now: the execution holding each (a concurrency key: the first, +N others), how
    long its lease has left (renewed while it runs), and the executions waiting for it, next
    first. Free locks nobody waits for are not listed.

    \b
      jobico locks
      jobico locks --json
      jobico executions show <holder id>      # what holds it
      jobico executions cancel <holder id>    # stop it (the next one starts)
    """
    res = client().list_locks() or {}
    if json_:
        print_json(res)
        return
    items = res.get("items", [])
    if not items:
        info("No lock is held or waited for.")
        return
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("LOCK", overflow="fold")
    table.add_column("HELD BY", no_wrap=True, min_width=36)
    table.add_column("LEASE", justify="right")
    table.add_column("WAITING", justify="right")
    table.add_column("NEXT", overflow="fold")
    for lock in items:
        waiting = lock.get("waiting") or []
        shown = waiting if all_waiting else waiting[:3]
        nxt = ", ".join(shown) + ("" if len(shown) == len(waiting) else f", ... (+{len(waiting) - len(shown)})")
        lease = lock.get("lease_ms")
        others = len(lock.get("holders") or []) - 1  # a concurrency key: up to its limit hold it
        held_by = (lock.get("holder") or "-") + (f" (+{others})" if others > 0 else "")
        table.add_row(text(lock.get("name")), text(held_by),
                      text("-" if lease is None else f"{lease / 1000:.1f}s"), text(str(len(waiting))), text(nxt))
    console.print(table)
    if res.get("truncated"):
        info("More than 500 locks: the first 500 by name are shown.")


def register(app: typer.Typer) -> None:
    commands.register(app)
