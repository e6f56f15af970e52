"""``forgepilot keys create|list|revoke``: API keys of the gateway (stored hashed, shown once)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from forgepilot.cli._common import err, out, print_json, settings

if TYPE_CHECKING:
    from forgepilot.gateway.store import GatewayStore
    from forgepilot.monitor import AuditAction

app = typer.Typer(help="API keys for the gateway (required when it is bound beyond loopback).", no_args_is_help=True)


def gateway_store() -> GatewayStore:
    from forgepilot.gateway.store import open_gateway_store  # the gateway stack loads only for commands that use it

    s = settings()
    return open_gateway_store(s.state_dir, s.database_url)


def audit(action: AuditAction, name: str, details: dict[str, Any] | None = None) -> None:
    """Record a key change in the audit log (who ran the command, which key)."""
    from forgepilot.monitor import AuditLog, audit_db, current_actor

    s = settings()
    log = AuditLog(audit_db(s.state_dir, s.database_url))
    try:
        log.append(action, actor=current_actor(), target=f"key:{name}", details=details)
    finally:
        log.close()


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="A name for the key (who or what uses it).")],
    rate: Annotated[
        int | None, typer.Option(min=0, help="Requests per minute for this key (default: gateway's).")
    ] = None,
    role: Annotated[
        str, typer.Option(help="read: the API and the dashboard's pages; admin: also its promote / rollback / pause.")
    ] = "read",
) -> None:
    """Create a key and print it once; only its hash is kept."""
    store = gateway_store()
    try:
        key = store.create_key(name, rate, role)
    finally:
        store.close()
    audit("key_created", name, {"rate_per_minute": rate, "hint": key[:7], "role": role})
    print(key)
    err.print(f"created key {escape(name)}: store it now, it cannot be shown again")


@app.command("list")
def list_(json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Keys with their state (the keys themselves are never shown)."""
    store = gateway_store()
    try:
        keys = store.keys()
    finally:
        store.close()
    if json_:
        print_json(keys)
        return
    if not keys:
        out.print("no API keys: forgepilot keys create NAME")
    for k in keys:
        state = "revoked" if k.revoked_at else "active"
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(k.created_at))
        rate = f", {k.rate_per_minute}/min" if k.rate_per_minute is not None else ""
        out.print(f"{escape(k.name)}  {k.hint}...  {k.role}, {state}, created {created}{rate}")


@app.command()
def revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key: requests with it are refused from now on."""
    store = gateway_store()
    try:
        store.revoke(name)
    finally:
        store.close()
    audit("key_revoked", name)
    err.print(f"revoked {escape(name)}")
