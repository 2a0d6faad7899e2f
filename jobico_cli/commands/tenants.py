"""``jobico tenant ...``: tenants and their keys (admin token)."""
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table

from ..client import UsageProblem
from ..output import cells, console, err_console, info, print_json, safe, sanitize
from .common import JsonOpt, client, command


class WebhookAuth(str, Enum):
    key = "key"
    hmac = "hmac"
    none = "none"


tenant_app = typer.Typer(help="Manage tenants and their keys (needs the admin token).", no_args_is_help=True)
key_app = typer.Typer(help="Manage a tenant's named API keys.", no_args_is_help=True)
tenant_app.add_typer(key_app, name="key")

TenantArg = Annotated[str, typer.Argument(help="Tenant id.", show_default=False)]


def register(app: typer.Typer) -> None:
    app.add_typer(tenant_app, name="tenant")


@command(tenant_app, "create")
def tenant_create(
    tenant: TenantArg,
    webhook_auth: Annotated[WebhookAuth, typer.Option(
        "--webhook-auth", help="How webhooks authenticate: a tenant key, an HMAC signature, or none.",
        case_sensitive=False)] = WebhookAuth.key,
    key_name: Annotated[str, typer.Option("--key-name", help="Name of the first key.")] = "default",
    json_: JsonOpt = False,
) -> None:
    """Create a tenant and print its first key (shown only once)."""
    res = client().create_tenant(tenant, webhook_auth.value, key_name)
    if json_:
        doc = {"tenant": res.get("tenant", tenant), "key": res.get("key")}
        for extra in ("key_name", "webhook_auth", "signing_secret"):
            if res.get(extra) is not None:
                doc[extra] = res[extra]
        print_json(doc)
        return
    info(f"Created tenant [bold]{safe(res.get('tenant', tenant))}[/] "
         f"(webhooks: {safe(res.get('webhook_auth', webhook_auth.value))}). "
         f"Key {safe(res.get('key_name', key_name))!r}, shown only once:")
    typer.echo(sanitize(res.get("key")))
    if res.get("signing_secret"):
        info("Webhook signing secret, shown only once:")
        typer.echo(sanitize(res["signing_secret"]))


@command(tenant_app, "list")
def tenant_list(json_: JsonOpt = False) -> None:
    """List tenants."""
    res = client().list_tenants() or {}
    if json_:
        print_json(res)
        return
    items = res.get("items", [])
    if not items:
        info("No tenants.")
        return
    table = Table("TENANT", "WEBHOOK AUTH", "SUBMITTER HEADER", "CREATED", box=None, header_style="bold")
    for t in items:
        table.add_row(*cells([t.get("id"), t.get("webhook_auth"), t.get("submitter_header") or "-",
                              t.get("created_at")]))
    console.print(table)


@command(tenant_app, "webhook")
def tenant_webhook(
    tenant: TenantArg,
    auth: Annotated[WebhookAuth, typer.Option(
        "--auth", help="How webhooks authenticate: a tenant key, an HMAC signature, or none.",
        case_sensitive=False, show_default=False)],
    rotate_secret: Annotated[bool, typer.Option("--rotate-secret", help="With hmac: issue a new signing secret; "
                                                "the old one keeps working for --grace seconds.")] = False,
    grace: Annotated[int | None, typer.Option(
        "--grace", min=0, show_default=False,
        help="With --rotate-secret: seconds the old secret stays valid (default: the server's "
             "JOBICO_WEBHOOK_SECRET_GRACE, 24 h; 0 = it stops at once). End it earlier with "
             "`jobico tenant revoke-previous-secret`.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Change how a tenant's webhooks authenticate (PATCH /api/v1/tenants/<tenant>).

    \b
      jobico tenant webhook acme --auth hmac --rotate-secret            # old secret valid 24 h more
      jobico tenant webhook acme --auth hmac --rotate-secret --grace 0  # old secret stops now
    """
    if rotate_secret and auth is not WebhookAuth.hmac:
        raise UsageProblem("--rotate-secret needs --auth hmac")
    if grace is not None and not rotate_secret:
        raise UsageProblem("--grace needs --rotate-secret")
    res = client().update_tenant(tenant, auth.value, rotate_secret, grace) or {}
    if json_:
        print_json(res)
        return
    info(f"Tenant [bold]{safe(res.get('id', tenant))}[/]: webhooks now use "
         f"{safe(res.get('webhook_auth', auth.value))}.")
    if res.get("signing_secret") and (rotate_secret or auth is WebhookAuth.hmac):
        info("Webhook signing secret:")
        typer.echo(sanitize(res["signing_secret"]))
    if res.get("previous_secret_expires_at"):
        info(f"The previous signing secret stays valid until {safe(res['previous_secret_expires_at'])} "
             f"(end it now: jobico tenant revoke-previous-secret {safe(res.get('id', tenant))}).")


@command(tenant_app, "revoke-previous-secret")
def tenant_revoke_previous_secret(tenant: TenantArg, json_: JsonOpt = False) -> None:
    """End a signing-secret rotation's overlap now: only the current secret is accepted.

    After `jobico tenant webhook <tenant> --auth hmac --rotate-secret` the old
    secret stays valid for a grace period so senders can move over; once they
    have, revoke it (PATCH /api/v1/tenants/<tenant> {"revoke_previous_secret": true}).
    """
    res = client().revoke_previous_secret(tenant) or {}
    if json_:
        print_json(res)
        return
    info(f"Tenant [bold]{safe(res.get('id', tenant))}[/]: only the current signing secret is accepted now.")


@command(tenant_app, "submitter-header")
def tenant_submitter_header(
    tenant: TenantArg,
    header: Annotated[str | None, typer.Argument(
        help="Request header whose value names the submitter, e.g. X-Submitter.", show_default=False)] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Go back to the key's name as the submitter.")] = False,
    json_: JsonOpt = False,
) -> None:
    """Name the header that says who submitted a webhook event (PATCH /api/v1/tenants/<tenant>).

    A webhook request carrying that header records its value as the executions'
    submitter (`jobico executions --submitter NAME`); without it, the submitter
    is the key's name ("hmac" or "anonymous" in those webhook modes). Cron
    triggers record "cron", chained events "chain".

    \b
      jobico tenant submitter-header acme X-Submitter
      jobico tenant submitter-header acme --clear
    """
    if (header is None) == (not clear):
        raise UsageProblem("give a HEADER, or --clear")
    res = client().set_submitter_header(tenant, None if clear else header) or {}
    if json_:
        print_json(res)
        return
    if res.get("submitter_header"):
        info(f"Tenant [bold]{safe(res.get('id', tenant))}[/]: the submitter of a webhook event is its "
             f"{safe(res['submitter_header'])} header (else the key's name).")
    else:
        info(f"Tenant [bold]{safe(res.get('id', tenant))}[/]: the submitter of a webhook event is the key's name.")


@command(tenant_app, "delete")
def tenant_delete(
    tenant: TenantArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a tenant with everything it owns."""
    _confirm(yes, f"Delete tenant {sanitize(tenant)!r} with all its packages, files and executions?")
    client().delete_tenant(tenant)
    info(f"Deleted tenant {safe(tenant)}.")


@command(key_app, "create")
def key_create(
    tenant: TenantArg,
    name: Annotated[str, typer.Argument(help="Key name.", show_default=False)],
    json_: JsonOpt = False,
) -> None:
    """Create a named key for a tenant and print it (shown only once)."""
    res = client().create_key(tenant, name)
    if json_:
        print_json({"tenant": tenant, **res})
        return
    info(f"Created key {safe(res.get('name', name))!r} for tenant {safe(tenant)}, shown only once:")
    typer.echo(sanitize(res.get("key")))


@command(key_app, "list")
def key_list(tenant: TenantArg, json_: JsonOpt = False) -> None:
    """List a tenant's keys (names and prefixes, never the secrets)."""
    res = client().list_keys(tenant) or {}
    if json_:
        print_json(res)
        return
    items = res.get("items", [])
    if not items:
        info(f"Tenant {safe(tenant)} has no keys.")
        return
    table = Table("NAME", "PREFIX", "CREATED", box=None, header_style="bold")
    for k in items:
        table.add_row(*cells([k.get("name"), k.get("prefix"), k.get("created_at")]))
    console.print(table)


@command(key_app, "delete")
def key_delete(
    tenant: TenantArg,
    name: Annotated[str, typer.Argument(help="Key name.", show_default=False)],
) -> None:
    """Delete (revoke) a tenant's key."""
    client().delete_key(tenant, name)
    info(f"Deleted key {safe(name)!r} of tenant {safe(tenant)}.")


def _confirm(yes: bool, question: str) -> None:
    import sys
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageProblem("refusing to delete without confirmation: pass --yes")
    if not typer.confirm(question, default=False, err=True):
        err_console.print("Cancelled.")
        raise typer.Exit(1)


__all__ = ["register"]
