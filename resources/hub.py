"""Hugging Face Hub access as a Dagster resource."""
import os
from typing import Optional

import dagster as dg


class HubResource(dg.ConfigurableResource):
    """Hugging Face Hub access for deployment-configured imports. Give `token` as dg.EnvVar so that it is
    resolved at run time and never shown; `endpoint` defaults to HF_ENDPOINT."""

    endpoint: Optional[str] = None
    token: Optional[str] = None

    @property
    def resolved_endpoint(self) -> Optional[str]:
        """The Hub endpoint: config, else HF_ENDPOINT, else None (huggingface.co)."""
        return self.endpoint or os.environ.get("HF_ENDPOINT") or None
