from typing import Optional

import dagster as dg

from eval_pipeline.lake import Lake
from eval_pipeline.settings import Settings


class LakeResource(dg.ConfigurableResource):
    """The lake (Parquet on a local folder or S3). Unset fields come from the environment at run time;
    S3 credentials always do (the standard AWS variables), never from config."""

    url: Optional[str] = None
    s3_endpoint_url: Optional[str] = None

    @property
    def lake(self) -> Lake:
        settings = Settings.from_env()
        return Lake(self.url or settings.prepare().lake_url, self.s3_endpoint_url or settings.s3_endpoint_url)

    @property
    def s3_endpoint(self) -> Optional[str]:
        return self.s3_endpoint_url or Settings.from_env().s3_endpoint_url

    @property
    def export_s3_endpoint(self) -> Optional[str]:
        return Settings.from_env().export_s3_endpoint_url
