"""The single dg.Definitions: the one place that wires assets, checks, jobs, sensors and resources."""
import os

import dagster as dg

from assets.exports import bundle_checksums_valid, export_bundles
from assets.generations import generation_checks, generations
from assets.grades import grades, grades_valid
from assets.historical import historical_metrics_agree, historical_results, historical_samples_valid
from assets.metrics import metrics, metrics_checks
from assets.suites import suite_inputs_valid, suite_versions
from eval_pipeline.orchestration.executors import deployment_executor
from eval_pipeline.orchestration.jobs import export_job, generation_job, historical_import_job, suite_publish_job
from eval_pipeline.orchestration.nightly import nightly_schedules
from eval_pipeline.orchestration.sensors import (
    generation_failed,
    generation_succeeded,
    queued_export_tasks,
    queued_runs,
    schedule_ticks,
    scheduled_run_outcomes,
)
from eval_pipeline.stores.settings import Settings
from resources import CatalogResource, GenerationThresholds, HubResource, LakeResource

# A server-side Hub token is optional; when the deployment sets one it is resolved at run time only.
_hub = HubResource(token=dg.EnvVar("EVAL_PIPELINE_HF_TOKEN")) if os.environ.get(
    "EVAL_PIPELINE_HF_TOKEN") else HubResource()

defs = dg.Definitions(
    assets=[historical_results, suite_versions, generations, grades, metrics, export_bundles],
    asset_checks=[historical_samples_valid, historical_metrics_agree, suite_inputs_valid,
                  generation_checks, grades_valid, metrics_checks,
                  bundle_checksums_valid],
    jobs=[historical_import_job, suite_publish_job, generation_job, export_job],
    sensors=[queued_runs, generation_succeeded, generation_failed, queued_export_tasks, schedule_ticks,
             scheduled_run_outcomes],
    schedules=nightly_schedules(),
    resources={"catalog": CatalogResource(), "lake": LakeResource(), "hub": _hub,
               "thresholds": GenerationThresholds()},
    executor=deployment_executor(Settings.from_env()),
)
