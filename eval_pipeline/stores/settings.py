"""Where state lives: one home folder holds the catalog, the lake and the Dagster instance by default."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


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

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        """From EVAL_PIPELINE_HOME (default ./.eval_pipeline), EVAL_PIPELINE_DATABASE_URL, EVAL_PIPELINE_LAKE_URL,
        EVAL_PIPELINE_S3_ENDPOINT_URL, EVAL_PIPELINE_EXPORT_S3_ENDPOINT_URL and DAGSTER_HOME in `environ`
        (default: os.environ). Unset, the catalog (SQLite catalog.db), the lake and DAGSTER_HOME are inside the
        home, the S3 endpoint is None and the export endpoint the lake's."""
        env = os.environ if environ is None else environ
        home = Path(env.get("EVAL_PIPELINE_HOME") or "./.eval_pipeline").expanduser().resolve()
        return cls(
            home=home,
            database_url=env.get("EVAL_PIPELINE_DATABASE_URL") or f"sqlite:///{home / 'catalog.db'}",
            lake_url=env.get("EVAL_PIPELINE_LAKE_URL") or str(home / "lake"),
            s3_endpoint_url=env.get("EVAL_PIPELINE_S3_ENDPOINT_URL") or None,
            dagster_home=Path(env.get("DAGSTER_HOME") or home / "dagster").expanduser().resolve(),
            export_s3_endpoint_url=(env.get("EVAL_PIPELINE_EXPORT_S3_ENDPOINT_URL")
                                    or env.get("EVAL_PIPELINE_S3_ENDPOINT_URL") or None),
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
