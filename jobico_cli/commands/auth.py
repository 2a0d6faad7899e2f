"""``jobico login`` and ``jobico whoami``."""
import sys
from typing import Annotated

import typer

from .. import config as cfg
from ..client import Client, UsageProblem
from ..output import info, print_json, safe, sanitize
from .common import Commands, JsonOpt, resolved

commands = Commands()


@commands("login")
def login(
    tenant: Annotated[str | None, typer.Option(
        help="Record this tenant in the config (default: the token's own tenant, from whoami).",
        show_default=False)] = None,
) -> None:
    """Check a token against the API (GET /api/v1/whoami) and save URL and token in the config file.

    The URL and token come from --api-url/--token, else JOBICO_API_URL/JOBICO_TOKEN, else
    the current config file; when no token is found and stdin is a terminal you are asked
    for one. The file is $JOBICO_HOME/config.toml (default ~/.config/jobico/config.toml),
    written with mode 0600.
    """
    conf = resolved()
    token = conf.token
    if not token:
        if not sys.stdin.isatty():
            raise UsageProblem("no token given: pass --token or set JOBICO_TOKEN")
        token = typer.prompt("Token", hide_input=True).strip()
        if not token:
            raise UsageProblem("no token given")
    me = Client(conf.api_url, token).whoami() or {}
    if me.get("admin"):
        who, own_tenant = "the admin", None
    else:
        own_tenant = me.get("tenant")
        who = f"tenant {sanitize(own_tenant)!s} (key {sanitize(me.get('key_name'))!s})"
    path = cfg.write_config(conf.path, conf.api_url, token, tenant or own_tenant)
    info(f"Logged in to {safe(conf.api_url)} as {safe(who)}.")
    info(f"Saved to {safe(path)}")


@commands("whoami")
def whoami(json_: JsonOpt = False) -> None:
    """Show who the configured token belongs to (the admin, or a tenant and key name)."""
    from .common import client
    c = client()
    me = c.whoami() or {}
    if json_:
        print_json(me)
        return
    if me.get("admin"):
        typer.echo(f"admin at {sanitize(c.base_url)}")
    else:
        typer.echo(f"tenant {sanitize(me.get('tenant'))} (key {sanitize(me.get('key_name'))}) "
                   f"at {sanitize(c.base_url)}")


def register(app: typer.Typer) -> None:
    commands.register(app)
