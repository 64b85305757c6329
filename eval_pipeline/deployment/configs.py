"""The files a stack runs on, rendered into its home: the Dagster instance (deploy/dagster.yaml with the
stack's PostgreSQL database), the Celery executor config (deploy/celery.yaml with its Redis database and key
prefix), the workspace (the code server's port) and stack.json (what Settings reads), plus its databases."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from eval_pipeline.deployment.layout import StackLayout
from eval_pipeline.errors import Conflict, InvalidInput
from eval_pipeline.stores.settings import STACK_FILE

STORAGES = ("run_storage", "event_log_storage", "schedule_storage")  # deploy/dagster.yaml's, each pooled
HEADER = "# Written by `eval-pipeline stack up` for {home}; rewritten at every up.\n"


def _template(layout: StackLayout, name: str) -> dict[str, Any]:
    path = layout.deploy_dir / name
    try:
        return dict(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, TypeError, ValueError) as e:
        raise InvalidInput("EVAL_PIPELINE_DEPLOY_DIR", f"cannot read the template {path}: {e}") from e


def instance_config(layout: StackLayout) -> dict[str, Any]:
    """deploy/dagster.yaml with its storage pointed at the stack's `dagster` database (no password: the
    server's trust rules or PGPASSWORD, which dagster-postgres's driver reads, supply it) and its run
    launcher at the stack's Redis database and key prefix (the Celery config's, which its runs worker reads)."""
    config = _template(layout, "dagster.yaml")
    parts = urlsplit(layout.postgres_url)
    database = {"hostname": parts.hostname, "port": parts.port or 5432, "username": parts.username or "postgres",
                "db_name": layout.database("dagster"), "scheme": "postgresql+psycopg2"}
    for storage in STORAGES:
        config[storage]["config"] = {"postgres_db": dict(database)}
    if "run_launcher" in config:
        celery = celery_config(layout)["execution"]["config"]
        config["run_launcher"]["config"].update({key: celery[key] for key in ("broker", "backend", "config_source")})
    return config


def max_concurrent_runs(layout: StackLayout) -> int:
    """The instance's limit on runs at once (deploy/dagster.yaml's concurrency.runs), which the runs
    worker needs as many processes as."""
    return int(instance_config(layout).get("concurrency", {}).get("runs", {}).get("max_concurrent_runs", 8))


def celery_config(layout: StackLayout) -> dict[str, Any]:
    """deploy/celery.yaml with the stack's Redis database as broker and result backend, every key under
    the stack's prefix."""
    config = _template(layout, "celery.yaml")
    execution = config["execution"]["config"]
    execution["broker"] = execution["backend"] = layout.redis_database_url
    source = execution.setdefault("config_source", {})
    source["broker_transport_options"] = {"global_keyprefix": layout.key_prefix, "max_retries": 3,
                                          "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
    source["result_backend_transport_options"] = {"global_keyprefix": layout.key_prefix}
    return config


def workspace_config(layout: StackLayout) -> dict[str, Any]:
    """The workspace of the webserver and the daemon: the stack's code server over gRPC."""
    return {"load_from": [{"grpc_server": {"host": "127.0.0.1", "port": layout.code_port,
                                           "location_name": "eval_pipeline"}}]}


def check_home(layout: StackLayout) -> None:
    """Refuse a home that holds state of another kind (an embedded SQLite catalog or Dagster instance):
    a stack would hide it. Raises Conflict naming the file."""
    for path in (layout.home / "catalog.db", layout.dagster_home / "dagster.yaml"):
        if path.exists() and not (path.suffix == ".yaml" and path.read_text().startswith(HEADER.split("{")[0])):
            raise Conflict(f"{path} belongs to a deployment without the stack; use a fresh EVAL_PIPELINE_HOME")


def write_configs(layout: StackLayout) -> dict[str, Path]:
    """Render every file the stack's processes read; returns their paths by name. Each is written to a
    temporary file and renamed, so a process never reads half a file."""
    layout.dir.mkdir(parents=True, exist_ok=True)
    (layout.dir / "logs").mkdir(exist_ok=True)
    layout.dagster_home.mkdir(parents=True, exist_ok=True)
    header = HEADER.format(home=layout.home)
    paths = {"dagster": layout.dagster_home / "dagster.yaml", "celery": layout.dir / "celery.yaml",
             "workspace": layout.dir / "workspace.yaml"}
    for name, config in (("dagster", instance_config(layout)), ("celery", celery_config(layout)),
                         ("workspace", workspace_config(layout))):
        _write(paths[name], header + yaml.safe_dump(config, sort_keys=False))
    return paths


def write_stack_file(layout: StackLayout, celery_path: Path, processes: list[dict[str, Any]]) -> None:
    """stack.json: the settings every command in this home reads (catalog URL, Celery config) and the
    processes started, with their pids."""
    _write(layout.home / STACK_FILE, json.dumps({
        "settings": {"database_url": layout.database_url("catalog"), "celery_config": str(celery_path)},
        "ident": layout.ident, "api_url": layout.api_url, "ui_url": layout.ui_url, "processes": processes,
    }, indent=2))


def read_stack_file(layout: StackLayout) -> dict[str, Any]:
    """stack.json as written by write_stack_file ({} when the home has no stack)."""
    path = layout.home / STACK_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def create_databases(layout: StackLayout) -> list[str]:
    """Create the stack's `catalog` and `dagster` databases on the PostgreSQL server where missing;
    returns the names created. Raises Conflict when the server cannot be reached."""
    import psycopg2  # deferred: only stack up talks to the server as its admin

    try:
        conn = psycopg2.connect(layout.postgres_url, connect_timeout=5)
    except psycopg2.OperationalError as e:
        raise Conflict(f"PostgreSQL at EVAL_PIPELINE_STACK_POSTGRES_URL is not reachable: {e}".strip()) from e
    created = []
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for role in ("catalog", "dagster"):
                name = layout.database(role)
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')  # name: fixed prefix + hex digits
                    created.append(name)
    finally:
        conn.close()
    return created
