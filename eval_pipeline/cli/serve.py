"""CLI commands `serve` (the HTTP API) and `keys` (its API keys), registered on the main group in main.py."""
from __future__ import annotations

import click

from eval_pipeline import service
from eval_pipeline.cli.common import _emit, front_door


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--execute", is_flag=True, help="Also execute queued eval runs and exports in this process "
                                              "(a single machine without a Dagster daemon).")
def serve(host: str, port: int, execute: bool) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json, health at /healthz)."""
    # deferred: the web stack (FastAPI, uvicorn, every route module) is only needed to serve
    import uvicorn

    from eval_pipeline.api.app import create_app

    uvicorn.run(create_app(service.open_runtime(), execute=execute), host=host, port=port, log_level="info")


@click.group("keys")
def keys() -> None:
    """API keys: each belongs to an org; only its hash is stored."""


@keys.command("create")
@click.option("--org", "org_id", required=True)
@click.option("--team", "team_id")
@click.option("--name")
@click.option("--kind", type=click.Choice(["bearer", "aksk"]), default="bearer", show_default=True,
              help="aksk: an access key / secret key pair for Qianfan-style signed calls.")
@front_door
def keys_create(org_id: str, team_id: str | None, name: str | None, kind: str) -> None:
    """Create a key; it is printed once and cannot be shown again."""
    _emit(service.create_key(service.open_runtime(), org_id, team_id=team_id, name=name, kind=kind))


@keys.command("revoke")
@click.argument("key_id")
@front_door
def keys_revoke(key_id: str) -> None:
    """Revoke an API key: it authenticates nothing from now on."""
    _emit(service.revoke_key(service.open_runtime(), key_id))
