"""The jobs: the historical import, suite publishing, an eval run's (model, task) partitions (generations,
then, if their blocking checks pass, grades and metrics in the same Dagster run), and export tasks."""
import dagster as dg

from assets.exports import export_bundles
from assets.generations import generations
from assets.grades import grades
from assets.historical import historical_results
from assets.metrics import metrics
from assets.suites import suite_versions
from eval_pipeline.orchestration.job_names import EXPORT_JOB, GENERATION_JOB
from eval_pipeline.service.partitions import export_partitions_def, generation_partitions_def

historical_import_job = dg.define_asset_job(
    "historical_import", selection=[historical_results],
    description="Import lm-evaluation-harness results from the sources file (run config `sources_file`) into "
                "versioned eval suites; a source already imported is skipped.")
suite_publish_job = dg.define_asset_job(
    "suite_publish", selection=[suite_versions],
    description="Publish a suite's tasks as a new suite version (one partition per suite).")
generation_job = dg.define_asset_job(
    GENERATION_JOB, selection=[generations, grades, metrics], partitions_def=generation_partitions_def,
    description=(
        "Generate, grade and measure (model, task) partitions of an eval run; the blocking generation checks "
        "stop a partition before it is graded. The service launches it tagged with its eval run. Launched "
        "from this UI without that tag (a backfill, a materialisation), it records one new eval run for the "
        "backfill, named 'Dagster backfill <id>', on the latest suite version holding the tasks, with the "
        "default settings: every doc of each task, each task's own generation settings, the generation "
        "cache on, the rule grades. `eval-pipeline runs list` and GET /v1/evals/runs show it."))
export_job = dg.define_asset_job(
    EXPORT_JOB, selection=[export_bundles], partitions_def=export_partitions_def,
    description="Publish an export task's bundle (one partition per export task, created by the API or CLI).")
