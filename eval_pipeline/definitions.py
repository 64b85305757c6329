"""The single dg.Definitions: the one place that wires assets, checks, jobs, sensors and resources."""
import os

import dagster as dg

from assets.exports import bundle_checksums_valid, export_bundles
from assets.generations import generations, generations_complete, generations_healthy
from assets.grades import grades, grades_valid
from assets.metrics import metrics, metrics_valid
from assets.historical import historical_metrics_agree, historical_results, historical_samples_valid
from assets.suites import suite_inputs_valid, suite_versions
from eval_pipeline.orchestration import EXPORT_JOB, GENERATION_JOB
from eval_pipeline.partitions import export_partitions_def, generation_partitions_def
from eval_pipeline.sensors import generation_failed, generation_succeeded, queued_export_tasks, queued_runs
from resources import CatalogResource, GenerationThresholds, HubResource, LakeResource

historical_import_job = dg.define_asset_job("historical_import", selection=[historical_results])
suite_publish_job = dg.define_asset_job("suite_publish", selection=[suite_versions])
# Generations, then (if their blocking checks pass) grades and metrics, in the same Dagster run.
generation_job = dg.define_asset_job(GENERATION_JOB, selection=[generations, grades, metrics],
                                     partitions_def=generation_partitions_def)
export_job = dg.define_asset_job(EXPORT_JOB, selection=[export_bundles], partitions_def=export_partitions_def)

# A server-side Hub token is optional; when the deployment sets one it is resolved at run time only.
_hub = HubResource(token=dg.EnvVar("EVAL_PIPELINE_HF_TOKEN")) if os.environ.get(
    "EVAL_PIPELINE_HF_TOKEN") else HubResource()

_thresholds = GenerationThresholds(**{
    field: float(os.environ[env]) for field, env in (("max_failed_rate", "EVAL_PIPELINE_MAX_FAILED_RATE"),
                                                     ("max_empty_rate", "EVAL_PIPELINE_MAX_EMPTY_RATE"))
    if os.environ.get(env)})

defs = dg.Definitions(
    assets=[historical_results, suite_versions, generations, grades, metrics, export_bundles],
    asset_checks=[historical_samples_valid, historical_metrics_agree, suite_inputs_valid,
                  generations_complete, generations_healthy, grades_valid, metrics_valid, bundle_checksums_valid],
    jobs=[historical_import_job, suite_publish_job, generation_job, export_job],
    sensors=[queued_runs, generation_succeeded, generation_failed, queued_export_tasks],
    resources={"catalog": CatalogResource(), "lake": LakeResource(), "hub": _hub, "thresholds": _thresholds},
)
