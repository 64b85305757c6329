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
        return self.endpoint or os.environ.get("HF_ENDPOINT") or None
