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

historical_import_job = dg.define_asset_job("historical_import", selection=[historical_results])
suite_publish_job = dg.define_asset_job("suite_publish", selection=[suite_versions])
generation_job = dg.define_asset_job(GENERATION_JOB, selection=[generations, grades, metrics],
                                     partitions_def=generation_partitions_def)
export_job = dg.define_asset_job(EXPORT_JOB, selection=[export_bundles], partitions_def=export_partitions_def)
