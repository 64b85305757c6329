"""The historical import as a user action: lm-eval results read from a Hub dataset repo or an fsspec
folder into a suite, recorded in Dagster as runless materialisations of `historical_results` (and of
`suite_versions` when a version is made)."""
from __future__ import annotations

from typing import Any

from eval_pipeline.historical.importer import import_results
from eval_pipeline.historical.request import ImportRequest, ImportResult
from eval_pipeline.service.instance import dagster_instance
from eval_pipeline.service.lineage import report_import
from eval_pipeline.stores.runtime import Runtime


def import_historical(rt: Runtime, body: dict[str, Any] | ImportRequest, *, hub_token: str | None = None,
                      org_id: str = "org_default", team_id: str = "team_default",
                      created_by: str | None = None) -> ImportResult:
    """Import the request's results (the brief's `eval.import`): `hub_token` reads a private repo for this
    call only and is never stored. A dry run only counts. Raises InvalidInput naming the field,
    SourceAuthError, SourceUnavailable or MalformedFile (naming the file and line); an import either
    records a run whole or not at all; a bad file is listed in the result's `errors` and the rest imports."""
    result = import_results(rt.catalog, rt.lake, body, hub_token=hub_token, s3_endpoint_url=rt.settings.s3_endpoint_url,
                            org_id=org_id, team_id=team_id, created_by=created_by)
    if not result.dry_run:
        report_import(dagster_instance(rt), result)
    return result
