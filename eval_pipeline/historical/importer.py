"""Import historical lm-eval results into versioned suites: the one core function every front door calls."""
from __future__ import annotations

import os
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from eval_pipeline import ids
from eval_pipeline.errors import InvalidInput, NotFound
from eval_pipeline.harness.results import ParsedResults
from eval_pipeline.historical.ingest import IngestedRun, IngestJob, IngestOutcome, run_job
from eval_pipeline.historical.planning import PlannedRun, plan_runs, task_names
from eval_pipeline.historical.request import (
    DEFAULT_SUITE_NAME,
    HubSourceSpec,
    ImportRequest,
    ImportResult,
    PathSourceSpec,
)
from eval_pipeline.scoring.gradability import BYPASS
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.catalog.store import now
from eval_pipeline.stores.files import register_file
from eval_pipeline.stores.lake import Lake
from eval_pipeline.stores.sources import FsspecSource, HubSource, Source, safe_relative
from eval_pipeline.suites.tasks import ensure_tasks, tasks_with_inputs
from eval_pipeline.suites.versions import publish_manifest, suite_task_pins

MATCH_TOLERANCE = 1e-6


def open_source(spec: HubSourceSpec | PathSourceSpec, hub_token: str | None, hub_endpoint: str | None,
                s3_endpoint_url: str | None) -> Source:
    """The source a request names, opened (a Hub repo resolved to its commit). Raises NotFound (repo,
    revision, folder), SourceAuthError (token refused or needed), SourceUnavailable (unreachable)."""
    if isinstance(spec, HubSourceSpec):
        return HubSource(spec.repo, spec.revision, hub_token, hub_endpoint)
    return FsspecSource(spec.url, s3_endpoint_url)


def import_results(
    catalog: Catalog,
    lake: Lake,
    request: ImportRequest | dict[str, Any],
    hub_token: str | None = None,
    hub_endpoint: str | None = None,
    s3_endpoint_url: str | None = None,
    *,
    org_id: str = "org_default",
    team_id: str = "team_default",
    created_by: str | None = None,
) -> ImportResult:
    """Discover, parse and import results files; see the README for the rules.

    Bad input raises InvalidInput / NotFound / SourceAuthError before anything is written; a bad file is
    listed in `errors` and the others still import; each run is imported all-or-nothing.
    """
    req = request if isinstance(request, ImportRequest) else ImportRequest.parse(request)
    if hub_endpoint is None:
        hub_endpoint = os.environ.get("HF_ENDPOINT") or None
    prefix = safe_relative(req.source.path_prefix, "source.path_prefix") if req.source.path_prefix else ""
    files = [safe_relative(f, f"source.files[{i}]") for i, f in enumerate(req.source.files or [])]
    suite = _find_suite(catalog, req, org_id)

    source = open_source(req.source, hub_token, hub_endpoint, s3_endpoint_url)
    try:
        result = ImportResult(
            source={"type": source.type, "repo": source.repo, "revision": source.revision},
            suite_id=suite.id if suite else None, suite_version=0,
            created_suite=suite is None, created_suite_version=False, dry_run=req.dry_run,
        )
        listing = source.list(prefix)
        plans = plan_runs(source, listing, files, req.limit_files, result)
        todo = _drop_already_imported(catalog, source.key, suite, plans, result)
        _check_missing_tasks(catalog, suite, req, plans)
        jobs = _jobs(catalog, source, todo)
        if req.dry_run:
            for plan, job in jobs:
                _count(plan, run_job(job, None), result)
            _preview_suite_version(catalog, suite, plans, result)
            return result
        import_id = ids.new_id("import")
        for plan, job in jobs:  # each run is committed as soon as it is read
            outcome = run_job(job, lake)
            if _count(plan, outcome, result):
                # a new suite only once a run is in
                suite = suite or _create_suite(catalog, req, org_id, team_id, created_by)
                assert outcome.run is not None  # _count is true only for an outcome without error: it has a run
                _commit_run(catalog, source, suite.id, import_id, plan, outcome.run, result)
        if suite is None:  # nothing could be imported into a suite that does not exist
            result.created_suite = False
            return result
        result.suite_id = suite.id
        _finish(catalog, lake, suite.id, import_id, req, plans, result)
        return result
    finally:
        source.close()


def _find_suite(catalog: Catalog, req: ImportRequest, org_id: str) -> t.Suite | None:
    """The suite to import into: by id or by name, within the caller's org only."""
    with catalog.session() as s:
        if req.suite_id:
            suite = s.get(t.Suite, req.suite_id)
            if suite is None or suite.org_id != org_id:
                raise NotFound("suite", req.suite_id)
            return suite
        return s.scalar(select(t.Suite).where(t.Suite.org_id == org_id,
                                              t.Suite.name == (req.suite_name or DEFAULT_SUITE_NAME)))


def _create_suite(catalog: Catalog, req: ImportRequest, org_id: str, team_id: str,
                  created_by: str | None) -> t.Suite:
    """Create the suite the request names (its name, description, metadata as strings), or return the one
    created concurrently under that name."""
    name = req.suite_name or DEFAULT_SUITE_NAME
    try:
        with catalog.session() as s:
            suite = t.Suite(id=ids.new_id("suite"), name=name, description=req.suite_description,
                            metadata_={k: str(v) for k, v in req.metadata.items()}, org_id=org_id,
                            team_id=team_id, created_by=created_by, created_at=now(), updated_at=now())
            s.add(suite)
        return suite
    except IntegrityError:  # created concurrently under the same name
        with catalog.session() as s:  # the IntegrityError was the (org_id, name) constraint: the row exists
            return cast(t.Suite, s.scalar(select(t.Suite).where(t.Suite.org_id == org_id, t.Suite.name == name)))


def _drop_already_imported(catalog: Catalog, source_key: str, suite: t.Suite | None,
                           plans: list[PlannedRun], result: ImportResult) -> list[PlannedRun]:
    done: set[tuple[str, str]] = set()
    if suite is not None:
        with catalog.session() as s:
            done = set(s.execute(select(t.HistoricalRun.path, t.HistoricalRun.fingerprint).where(
                t.HistoricalRun.suite_id == suite.id, t.HistoricalRun.source_key == source_key)).all())
    todo, seen = [], set()
    for plan in plans:
        content = plan.fingerprint
        if (plan.results.path, plan.fingerprint) in done or content in seen:
            result.skipped_runs += 1
        else:
            todo.append(plan)
        seen.add(content)
    return todo


def _check_missing_tasks(catalog: Catalog, suite: t.Suite | None, req: ImportRequest,
                         plans: list[PlannedRun]) -> None:
    if suite is None or req.create_missing_tasks:
        return
    missing = sorted(task_names(plans) - set(suite_task_pins(catalog, suite.id)))
    if missing:
        raise InvalidInput("create_missing_tasks",
                           f"suite {suite.id} lacks tasks {', '.join(missing)}; set create_missing_tasks "
                           "to add them as a new suite version")


def _default_filters(parsed: ParsedResults) -> dict[str, str]:
    """Legacy samples carry no filter name: use the task's only filter when results name one."""
    out = {}
    for task in parsed.leaf_tasks:
        filters = {m.filter for m in task.metrics}
        out[task.name] = filters.pop() if len(filters) == 1 else "none"
    return out


def _jobs(catalog: Catalog, source: Source, plans: list[PlannedRun]) -> list[tuple[PlannedRun, IngestJob]]:
    """One job per run; a task lacking inputs gets them from the first run (in path order) that has it."""
    claimed = tasks_with_inputs(catalog, {name for p in plans for name in p.specs})
    out = []
    for plan in plans:
        wants = set(plan.samples) - claimed
        claimed |= wants
        out.append((plan, IngestJob(
            samples=plan.samples, open_file=source.open, default_filters=_default_filters(plan.parsed),
            samples_rel=f"historical_samples/{plan.lake_key}.parquet",
            inputs_rels={n: f"task_inputs/{plan.specs[n].slug}/{plan.lake_key}.parquet" for n in wants},
        )))
    return out


def _count(plan: PlannedRun, outcome: IngestOutcome, result: ImportResult) -> bool:
    """Count the outcome in `result` (a run and its samples, or an error); True when the run was read."""
    if outcome.error is not None:
        result.errors.append({**outcome.error, "results_file": plan.results.path})
        return False
    assert outcome.run is not None  # an outcome without error has its run
    result.imported_runs += 1
    result.imported_samples += outcome.run.samples
    return True


def _commit_run(catalog: Catalog, source: Source, suite_id: str, import_id: str, plan: PlannedRun,
                ingested: IngestedRun, result: ImportResult) -> None:
    """The run's catalog rows in one transaction: tasks (and their new versions), files, run, metrics."""
    specs = plan.specs
    for name, kind in ingested.request_kinds.items():
        specs[name].request_kind = kind
    for name, inputs in ingested.inputs.items():
        specs[name].inputs = inputs
    try:
        with catalog.session() as s:
            task_ids = ensure_tasks(s, specs.values())
            samples_file = register_file(s, "historical_samples", ingested.samples_file)
            run = t.HistoricalRun(
                id=ids.new_id("historical_run"), import_id=import_id, suite_id=suite_id,
                source_key=source.key, path=plan.results.path, fingerprint=plan.fingerprint,
                model=plan.parsed.model, model_args=redact(plan.parsed.model_args),
                harness_version=plan.parsed.harness_version, git_hash=plan.parsed.git_hash,
                evaluated_at=plan.parsed.evaluated_at, config=redact(plan.parsed.config),
                samples_file_id=samples_file, n_samples=ingested.samples, created_at=now(),
            )
            s.add(run)
            s.flush()
            s.add_all(_metric_rows(run.id, plan.parsed, ingested, task_ids))
    except IntegrityError:
        if not _already_imported(catalog, suite_id, source.key, plan):
            raise
        # The same file was imported concurrently: it is there, count it once.
        result.imported_runs -= 1
        result.imported_samples -= ingested.samples
        result.skipped_runs += 1


def _already_imported(catalog: Catalog, suite_id: str, source_key: str, plan: PlannedRun) -> bool:
    with catalog.session() as s:
        return s.scalar(select(t.HistoricalRun.id).where(
            t.HistoricalRun.suite_id == suite_id, t.HistoricalRun.source_key == source_key,
            t.HistoricalRun.path == plan.results.path,
            t.HistoricalRun.fingerprint == plan.fingerprint)) is not None


CREDENTIAL_WORDS = ("key", "token", "secret", "password", "auth")


REDACTED = "[redacted]"


def redact(value: Any) -> Any:
    """`value` with every credential-looking entry's value replaced, at any depth: dict keys, and the
    `k=v,k=v` strings lm-eval uses for model_args (e.g. `model=gpt-4,api_key=sk-...`). Returns a copy of
    dicts and lists, other values as they are."""
    def secret(name: str) -> bool:
        return any(w in name.lower() for w in CREDENTIAL_WORDS)

    if isinstance(value, dict):
        return {k: REDACTED if secret(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str) and "=" in value:
        return ",".join(f"{k}={REDACTED}" if sep and secret(k) else part
                        for part in value.split(",") for k, sep, _ in [part.partition("=")])
    return value


def _metric_rows(run_id: str, parsed: ParsedResults, ingested: IngestedRun,
                 task_ids: dict[str, str]) -> list[t.HistoricalMetric]:
    rows = []
    for task in parsed.tasks:
        means = task.mean_metrics()
        for m in task.metrics:
            stat = ingested.means.get((task.name, m.metric, m.filter))
            recomputed = stat.mean if stat is not None and m.metric in means else None
            matches = (None if recomputed is None or m.value is None
                       else abs(recomputed - m.value) <= MATCH_TOLERANCE)
            rows.append(t.HistoricalMetric(
                run_id=run_id, task_name=task.name, is_group=task.is_group,
                task_id=None if task.is_group else task_ids.get(task.name),
                # lm-eval's --predict_only placeholder (999) is kept as a metric without a value
                metric=m.metric, filter=m.filter, value=None if m.metric == BYPASS else m.value,
                stderr=None if m.metric == BYPASS else m.stderr,
                n_samples=stat.n if stat is not None and stat.n else task.n_samples,
                recomputed=recomputed, recomputed_matches=matches,
            ))
    return rows


def _pins_after(catalog: Catalog, suite_id: str | None, plans: list[PlannedRun], result: ImportResult
                ) -> tuple[int, dict[str, int] | None]:
    """(the suite's latest version, the pins {task name: version} of the version this import adds, or None).

    The new version keeps every pinned task and adds this import's tasks at their current versions
    (a task that gained inputs has a newer one). A task not in the catalog yet (a dry run) counts as 1.
    """
    failed = {e.get("results_file") for e in result.errors}
    names = task_names([p for p in plans if p.results.path not in failed])
    current = suite_task_pins(catalog, suite_id) if suite_id else {}
    with catalog.session() as s:
        versions = dict(s.execute(select(t.Task.name, t.Task.current_version).where(t.Task.name.in_(names))).all())
        latest = (s.scalar(select(func.max(t.SuiteVersion.version)).where(t.SuiteVersion.suite_id == suite_id))
                  if suite_id else None) or 0
    desired = dict(current)
    for name in names:
        desired[name] = max(desired.get(name, 0), versions.get(name, 1))
    return latest, (desired if desired != current else None)


def _finish(catalog: Catalog, lake: Lake, suite_id: str, import_id: str, req: ImportRequest,
            plans: list[PlannedRun], result: ImportResult) -> None:
    """Add the suite version the import makes (if any) and the import's record, in one transaction."""
    latest, pins = _pins_after(catalog, suite_id, plans, result)
    version = latest + (pins is not None)
    with catalog.session() as s:
        if pins is not None:
            sv = t.SuiteVersion(id=ids.new_id("suite_version"), suite_id=suite_id, version=version,
                                import_id=import_id, created_at=now())
            s.add(sv)
            s.flush()
            by_name = dict(s.execute(select(t.Task.name, t.Task.id).where(t.Task.name.in_(pins))).all())
            s.add_all(t.SuiteVersionTask(suite_version_id=sv.id, task_id=by_name[n], task_version=v)
                      for n, v in pins.items())
            cast(t.Suite, s.get(t.Suite, suite_id)).updated_at = now()  # the suite the runs were imported into
        result.created_suite_version = pins is not None
        result.suite_version = version
        result.import_id = import_id
        s.add(t.Import(
            id=import_id, source_type=result.source["type"], source_repo=result.source["repo"],
            source_revision=result.source["revision"], suite_id=suite_id, suite_version=version,
            created_suite=result.created_suite, created_suite_version=result.created_suite_version,
            discovered_files=result.discovered_files, imported_runs=result.imported_runs,
            skipped_runs=result.skipped_runs, imported_samples=result.imported_samples,
            errors=result.errors, metadata_=req.metadata, created_at=now(),
        ))
    if result.created_suite_version:
        publish_manifest(catalog, lake, suite_id)


def _preview_suite_version(catalog: Catalog, suite: t.Suite | None, plans: list[PlannedRun],
                           result: ImportResult) -> None:
    latest, pins = _pins_after(catalog, suite.id if suite else None, plans, result)
    result.created_suite_version = pins is not None
    result.suite_version = latest + (pins is not None)

