"""The single dg.Definitions: the one place that wires assets, checks, jobs and resources together."""
import os

import dagster as dg

from assets.historical import historical_metrics_agree, historical_results, historical_samples_valid
from assets.suites import suite_inputs_valid, suite_versions
from resources import CatalogResource, HubResource, LakeResource

historical_import_job = dg.define_asset_job("historical_import", selection=[historical_results])
suite_publish_job = dg.define_asset_job("suite_publish", selection=[suite_versions])

# A server-side Hub token is optional; when the deployment sets one it is resolved at run time only.
_hub = HubResource(token=dg.EnvVar("EVAL_PIPELINE_HF_TOKEN")) if os.environ.get(
    "EVAL_PIPELINE_HF_TOKEN") else HubResource()

defs = dg.Definitions(
    assets=[historical_results, suite_versions],
    asset_checks=[historical_samples_valid, historical_metrics_agree, suite_inputs_valid],
    jobs=[historical_import_job, suite_publish_job],
    resources={"catalog": CatalogResource(), "lake": LakeResource(), "hub": _hub},
)
