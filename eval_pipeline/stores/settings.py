"""Where state lives: one home folder holds the catalog, the lake and the Dagster instance by default."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

STACK_FILE = "stack/stack.json"  # written by `eval-pipeline stack up`: the URLs its processes share


@dataclass(frozen=True)
class Settings:
    """Where state lives: the home folder, the catalog's SQLAlchemy URL, the lake's URL (a folder or s3://),
    the S3 endpoints (None: AWS's), and DAGSTER_HOME."""

    home: Path
    database_url: str
    lake_url: str
    s3_endpoint_url: str | None
    dagster_home: Path
    export_s3_endpoint_url: str | None = None  # object-storage exports; default: s3_endpoint_url
    celery_config: Path | None = None  # the Celery executor's YAML: set, Dagster runs execute on Celery workers
    k8s_executor_config: Path | None = None  # the k8s_job_executor's YAML: set, each step runs in its own pod

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        """From EVAL_PIPELINE_HOME (default ./.eval_pipeline), EVAL_PIPELINE_DATABASE_URL, EVAL_PIPELINE_LAKE_URL,
        EVAL_PIPELINE_S3_ENDPOINT_URL, EVAL_PIPELINE_EXPORT_S3_ENDPOINT_URL, EVAL_PIPELINE_CELERY_CONFIG,
        EVAL_PIPELINE_K8S_EXECUTOR_CONFIG and DAGSTER_HOME in `environ` (default: os.environ). Unset, the
        catalog (SQLite catalog.db), the lake and DAGSTER_HOME are inside the home, the S3 endpoint is None and
        the export endpoint the lake's; in a home
        where `eval-pipeline stack up` runs a deployment, the catalog URL and the Celery config are the stack's
        (its stack/stack.json), so a command given only EVAL_PIPELINE_HOME talks to that deployment."""
        env = os.environ if environ is None else environ
        home = Path(env.get("EVAL_PIPELINE_HOME") or "./.eval_pipeline").expanduser().resolve()
        stack = _stack_settings(home)
        celery_config = env.get("EVAL_PIPELINE_CELERY_CONFIG") or stack.get("celery_config")
        return cls(
            home=home,
            database_url=(env.get("EVAL_PIPELINE_DATABASE_URL") or stack.get("database_url")
                          or f"sqlite:///{home / 'catalog.db'}"),
            lake_url=env.get("EVAL_PIPELINE_LAKE_URL") or str(home / "lake"),
            s3_endpoint_url=env.get("EVAL_PIPELINE_S3_ENDPOINT_URL") or None,
            dagster_home=Path(env.get("DAGSTER_HOME") or home / "dagster").expanduser().resolve(),
            export_s3_endpoint_url=(env.get("EVAL_PIPELINE_EXPORT_S3_ENDPOINT_URL")
                                    or env.get("EVAL_PIPELINE_S3_ENDPOINT_URL") or None),
            celery_config=Path(celery_config) if celery_config else None,
            k8s_executor_config=(Path(env["EVAL_PIPELINE_K8S_EXECUTOR_CONFIG"])
                                 if env.get("EVAL_PIPELINE_K8S_EXECUTOR_CONFIG") else None),
        )

    def prepare(self) -> "Settings":
        """Create the local folders this configuration writes to (and a default dagster.yaml); returns self."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        instance_config = self.dagster_home / "dagster.yaml"
        if not instance_config.exists():  # the embedded default: SQLite storage inside DAGSTER_HOME
            instance_config.write_text("telemetry:\n  enabled: false\n")
        if "://" not in self.lake_url or self.lake_url.startswith("file://"):
            Path(self.lake_url.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
        return self


def _stack_settings(home: Path) -> dict[str, str]:
    """The settings a stack deployment in `home` recorded ({} when there is none)."""
    path = home / STACK_FILE
    if not path.exists():
        return {}
    return {k: v for k, v in json.loads(path.read_text()).get("settings", {}).items() if isinstance(v, str)}
