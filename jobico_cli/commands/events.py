"""``jobico send``: post events to a tenant's webhook."""
import hashlib
import hmac
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ..client import UsageProblem
from ..output import info, print_json, safe, sanitize
from .common import Commands, JsonOpt, client, read_local, resolved


def _load(data: str | None, file: Path | None) -> Any:
    if (data is None) == (file is None):
        raise UsageProblem("give exactly one of --data JSON or --file FILE")
    if file is not None:
        if str(file) == "-":
            raw, where = sys.stdin.buffer.read(), "stdin"
        else:
            raw, where = read_local(file, "event file"), repr(str(file))
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UsageProblem(f"{where} is not valid JSON: {exc}") from None
    try:
        return json.loads(data)  # type: ignore[arg-type]
    except ValueError as exc:
        raise UsageProblem(f"--data is not valid JSON: {exc}") from None


commands = Commands()


@commands("send")
def send(
    event: Annotated[str, typer.Argument(help="Event id.", show_default=False)],
    data: Annotated[str | None, typer.Option("--data", "-d", metavar="JSON", show_default=False,
                                                help="The event as JSON; an array sends several.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", show_default=False,
                                                 help="Read the JSON from a file ('-' for stdin).")] = None,
    tenant: Annotated[str | None, typer.Option(
        "--tenant", "-t", show_default=False,
        help="Tenant (default: the config file's tenant, else the token's own, from whoami).")] = None,
    idempotency_key: Annotated[str | None, typer.Option(
        "--idempotency-key", show_default=False,
        help="Repeating a request with the same key enqueues nothing new.")] = None,
    signing_secret: Annotated[str | None, typer.Option(
        "--signing-secret", envvar="JOBICO_SIGNING_SECRET", show_default=False,
        help="Sign the request (tenants with hmac webhooks) \\[env: JOBICO_SIGNING_SECRET].")] = None,
    gateway_url: Annotated[str | None, typer.Option(
        "--gateway-url", envvar="JOBICO_GATEWAY_URL", show_default=False,
        help="Where the webhook gateway listens when it has its own port (JOBICO_GATEWAY_PORT), e.g. "
             "http://127.0.0.1:8081 (default: the API URL) \\[env: JOBICO_GATEWAY_URL].")] = None,
    json_: JsonOpt = False,
) -> None:
    """Send events to POST /events/<tenant>/<event>; print the new execution ids.

    \b
      jobico send hello --data '{"name": "Ada"}'
      jobico send hello --data '[{"name": "Ada"}, {"name": "Bob"}]'
      jobico send hello --file events.json
    """
    doc = _load(data, file)
    events = doc if isinstance(doc, list) else [doc]
    if not events:
        raise UsageProblem("no events to send: the JSON array is empty")
    c = client()
    if tenant is None:
        tenant = resolved().tenant
    if tenant is None:
        me = c.whoami() or {}
        tenant = me.get("tenant")
        if not tenant:
            raise UsageProblem("which tenant? pass --tenant (the admin token has no tenant of its own)")
    body = json.dumps({"data": events}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    headers = {}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    if signing_secret:
        ts = str(int(time.time()))
        mac = hmac.new(signing_secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        headers.update({"X-Jobico-Timestamp": ts, "X-Jobico-Signature": f"sha256={mac}"})
    if gateway_url:
        from ..client import Client
        c = Client(gateway_url, c.token)
    res = c.send_events(tenant, event, body, headers) or {}
    if json_:
        print_json(res)
        return
    ids = res.get("executions", [])
    info(f"Queued {len(ids)} execution{'s' if len(ids) != 1 else ''} of {safe(tenant)}/{safe(event)}:")
    for eid in ids:
        typer.echo(sanitize(eid))


def register(app: typer.Typer) -> None:
    commands.register(app)
