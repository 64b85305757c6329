"""The lake as a Dagster resource."""
from typing import Optional

import dagster as dg
from pydantic import PrivateAttr

from eval_pipeline.stores.lake import Lake
from eval_pipeline.stores.settings import Settings


class LakeResource(dg.ConfigurableResource):
    """The lake (Parquet on a local folder or S3), built once per run. Unset fields come from the
    environment at run time; S3 credentials always do (the standard AWS variables), never from config."""

    url: Optional[str] = None
    s3_endpoint_url: Optional[str] = None
    _lake: Optional[Lake] = PrivateAttr(default=None)
    _settings: Optional[Settings] = PrivateAttr(default=None)

    def setup_for_execution(self, context: Optional[dg.InitResourceContext]) -> None:
        """Build the lake once per run, from config and the environment."""
        self._settings = Settings.from_env()
        self._lake = Lake(self.url or self._settings.prepare().lake_url,
                          self.s3_endpoint_url or self._settings.s3_endpoint_url)

    def _ready(self) -> Settings:
        if self._settings is None:  # used outside a Dagster execution (built directly)
            self.setup_for_execution(None)
        assert self._settings is not None
        return self._settings

    @property
    def lake(self) -> Lake:
        """The lake this run reads and writes."""
        self._ready()
        assert self._lake is not None
        return self._lake

    @property
    def s3_endpoint(self) -> Optional[str]:
        """The S3 endpoint of the lake and of s3:// import sources (None: AWS's own)."""
        return self.s3_endpoint_url or self._ready().s3_endpoint_url

    @property
    def export_s3_endpoint(self) -> Optional[str]:
        """The S3 endpoint of export buckets (EVAL_PIPELINE_EXPORT_S3_ENDPOINT_URL)."""
        return self._ready().export_s3_endpoint_url
