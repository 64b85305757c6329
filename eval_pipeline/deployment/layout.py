"""Where a stack lives and what it connects to: derived from the home, overridden by the environment.

Two homes never mix: each gets PostgreSQL databases, a Redis database number and a Redis key prefix of its
own, derived from a hash of the home's path."""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from eval_pipeline.errors import InvalidInput
from eval_pipeline.stores.settings import Settings

# The environment a stack reads (documented in the README's deployment section), with defaults.
DEFAULTS = {
    "EVAL_PIPELINE_STACK_POSTGRES_URL": "postgresql://postgres@127.0.0.1:5432/postgres",
    "EVAL_PIPELINE_STACK_REDIS_URL": "redis://127.0.0.1:6379",
    "EVAL_PIPELINE_STACK_GPU_WORKERS": "1",
    "EVAL_PIPELINE_STACK_DEFAULT_WORKERS": "1",
    "EVAL_PIPELINE_STACK_GPU_POOL_LIMIT": "",  # default: the number of gpu workers
    "EVAL_PIPELINE_STACK_UI_PORT": "3000",
    "EVAL_PIPELINE_STACK_API_PORT": "8000",
    "EVAL_PIPELINE_STACK_CODE_PORT": "4266",
    "EVAL_PIPELINE_STACK_WORKER_GPUS": "",  # GPUs each gpu worker holds; unset: what its engine resolves
}


@dataclass(frozen=True)
class StackLayout:
    """A stack's identity, files, URLs, ports and worker counts."""

    home: Path
    ident: str  # 12 hex digits of sha256(home): names its databases and keys
    postgres_url: str  # the server's admin URL (a database to connect to for CREATE DATABASE)
    redis_url: str  # the server, without a database number
    gpu_workers: int
    default_workers: int
    gpu_pool_limit: int
    worker_gpus: int | None  # None: each engine's own count (vLLM's tensor-parallel size; 0 on a CPU build)
    ui_port: int
    api_port: int
    code_port: int
    deploy_dir: Path  # deploy/: the instance and Celery templates

    @property
    def dir(self) -> Path:
        """The stack's own folder in the home: stack.json, configs, logs."""
        return self.home / "stack"

    @property
    def dagster_home(self) -> Path:
        """DAGSTER_HOME, as Settings derives it from the home."""
        return Settings.from_env({"EVAL_PIPELINE_HOME": str(self.home)}).dagster_home

    def database(self, role: str) -> str:
        """The name of the stack's PostgreSQL database for `role` (catalog or dagster)."""
        return f"eval_pipeline_{self.ident}_{role}"

    def database_url(self, role: str) -> str:
        """The SQLAlchemy URL of the stack's database for `role` (psycopg2, as dagster-postgres speaks)."""
        parts = urlsplit(self.postgres_url)
        return urlunsplit(("postgresql+psycopg2", parts.netloc, f"/{self.database(role)}", "", ""))

    @property
    def redis_database_url(self) -> str:
        """The Redis URL of the stack's Celery broker and result backend (a database number of its own)."""
        return f"{self.redis_url.rstrip('/')}/{int(self.ident, 16) % 16}"

    @property
    def key_prefix(self) -> str:
        """The prefix of every Redis key the stack's Celery broker and backend write."""
        return f"eval_pipeline:{self.ident}:"

    @property
    def api_url(self) -> str:
        """The HTTP API's base URL."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def ui_url(self) -> str:
        """The Dagster UI's URL."""
        return f"http://127.0.0.1:{self.ui_port}"

    @property
    def bin_dir(self) -> Path:
        """Where this Python's console scripts are (dagster, dagster-celery, celery, eval-pipeline)."""
        return Path(sys.executable).parent


def stack_layout(environ: dict[str, str] | None = None) -> StackLayout:
    """The layout for EVAL_PIPELINE_HOME (default ./.eval_pipeline) and the EVAL_PIPELINE_STACK_* variables
    in `environ` (default os.environ). Raises InvalidInput naming the variable that is malformed, or a URL
    that carries a password (give it as PGPASSWORD or in Redis's own config, never in a file of ours)."""
    env = os.environ if environ is None else environ
    get = {k: env.get(k) or v for k, v in DEFAULTS.items()}
    home = Settings.from_env(dict(env)).home
    for name in ("EVAL_PIPELINE_STACK_POSTGRES_URL", "EVAL_PIPELINE_STACK_REDIS_URL"):
        parts = urlsplit(get[name])
        if not parts.hostname:
            raise InvalidInput(name, f"{get[name]!r} is not a URL with a host")
        if parts.password:
            raise InvalidInput(name, "must not carry a password: it would be written to the stack's files")

    def number(name: str, low: int, high: int, default: str | None = None) -> int:
        raw = get[name] or (default or "")
        try:
            value = int(raw)
        except ValueError:
            raise InvalidInput(name, f"{raw!r} is not an integer") from None
        if not low <= value <= high:
            raise InvalidInput(name, f"{value} is outside {low}..{high}")
        return value

    gpu_workers = number("EVAL_PIPELINE_STACK_GPU_WORKERS", 1, 64)
    return StackLayout(
        home=home, ident=hashlib.sha256(str(home).encode()).hexdigest()[:12],
        postgres_url=get["EVAL_PIPELINE_STACK_POSTGRES_URL"], redis_url=get["EVAL_PIPELINE_STACK_REDIS_URL"],
        gpu_workers=gpu_workers, default_workers=number("EVAL_PIPELINE_STACK_DEFAULT_WORKERS", 1, 64),
        gpu_pool_limit=number("EVAL_PIPELINE_STACK_GPU_POOL_LIMIT", 1, 1024, str(gpu_workers)),
        worker_gpus=(number("EVAL_PIPELINE_STACK_WORKER_GPUS", 0, 64) if get["EVAL_PIPELINE_STACK_WORKER_GPUS"]
                     else None),
        ui_port=number("EVAL_PIPELINE_STACK_UI_PORT", 1, 65535),
        api_port=number("EVAL_PIPELINE_STACK_API_PORT", 1, 65535),
        code_port=number("EVAL_PIPELINE_STACK_CODE_PORT", 1, 65535),
        deploy_dir=Path(env.get("EVAL_PIPELINE_DEPLOY_DIR") or Path(__file__).resolve().parents[2] / "deploy"),
    )
