"""``jobico env set/list/unset``: the tenant's stored environment variables and secrets."""
import sys
from typing import Annotated

import typer
from rich.table import Table

from ..client import UsageProblem, segment
from ..output import cells, console, info, print_json, safe
from .common import JsonOpt, client, command

env_app = typer.Typer(
    help="Stored environment variables and secrets of your tenant. A package uses one as "
         "`environment: {VAR: {secret: NAME}}`; a change applies to executions started afterwards "
         "(no redeploy). Secret values are never shown again.",
    no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="The stored variable's name (what `{secret: NAME}` refers to).",
                                        show_default=False)]


def register(app: typer.Typer) -> None:
    app.add_typer(env_app, name="env")


def _read_value(value: str | None, secret: bool) -> str:
    if value is not None:
        return value
    if not sys.stdin.isatty():  # `printf %s "$TOKEN" | jobico env set api-token --secret`
        data = sys.stdin.read()
        return data[:-1] if data.endswith("\n") else data
    if not secret:
        raise UsageProblem("give the value as an argument, or on stdin")
    return typer.prompt("Value (not echoed)", hide_input=True, confirmation_prompt=True)


@command(env_app, "set")
def env_set(
    name: NameArg,
    value: Annotated[str | None, typer.Argument(
        help="The value. For a secret, leave it out to type it (not echoed) or pipe it on stdin: "
             "an argument stays in your shell history.", show_default=False)] = None,
    secret: Annotated[bool, typer.Option("--secret/--plain", help="A secret: sealed, never shown again, masked "
                                                                 "(***) in execution records.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Create or replace a stored variable (takes effect for executions started afterwards)."""
    res = client().request("PUT", f"/api/v1/environment/{segment(name)}",
                           json_body={"value": _read_value(value, secret), "secret": secret}) or {}
    if json_:
        print_json(res)
        return
    what = "secret" if res.get("secret") else "variable"
    info(f"Set {what} [bold]{safe(res.get('name', name))}[/] (sealed with key {safe(res.get('key_id'))}); "
         "executions started from now on use it.")


@command(env_app, "list")
def env_list(json_: JsonOpt = False) -> None:
    """List stored variables; secrets show as *** with when they were last set."""
    res = client().request("GET", "/api/v1/environment") or {}
    items = res.get("items", [])
    if json_:
        print_json(res)
        return
    if not items:
        info("No stored variables. Add one with `jobico env set NAME --secret`.")
        return
    table = Table("name", "kind", "value", "updated", "key id")
    for v in items:
        table.add_row(*cells((v.get("name"), "secret" if v.get("secret") else "plain", v.get("value"),
                              v.get("updated_at"), v.get("key_id"))))
    console.print(table)


@command(env_app, "unset")
def env_unset(name: NameArg, json_: JsonOpt = False) -> None:
    """Remove a stored variable (executions still referencing it are then cancelled, with a message)."""
    client().request("DELETE", f"/api/v1/environment/{segment(name)}")
    if json_:
        print_json({"name": name, "removed": True})
        return
    info(f"Removed [bold]{safe(name)}[/].")
