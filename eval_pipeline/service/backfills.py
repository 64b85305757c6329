"""Backfills of the model x task grid: a list of models, one model at a list of revisions (training
checkpoints), or exactly the stale cells, over a suite version's tasks, as one eval run and one Dagster
asset backfill of its (model, task) partitions; and which cells are stale, and why.

The eval run is created first, with origin `dagster:<backfill id>` and the backfill's tag on its Dagster
runs, so every cell is an eval run partition (the API, the report and comparisons see it). Without
`wait`, the backfill is recorded as requested and the Dagster daemon's backfill loop launches its runs
(cut into partition ranges by Dagster itself, BackfillPolicy.single_run), resuming by itself after a
crash. With
`wait`, its Dagster runs execute here, tagged with the backfill, and the backfill is recorded once they
end, completed with what materialised (recorded at the end so that a daemon never launches it twice).
`resume_backfill` executes the cells a crashed `wait` left unfinished; finished cells are not redone."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.definitions.events import AssetKeyPartitionKey
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.execution.execution_result import ExecutionResult
from dagster._core.utils import make_new_backfill_id
from sqlalchemy import select

from eval_pipeline import runs
from eval_pipeline.errors import Conflict, InvalidInput, NotFound
from eval_pipeline.models.registry import add_model, list_models
from eval_pipeline.results.report_page import CHECKPOINTS
from eval_pipeline.runs.creation import check_run_request
from eval_pipeline.runs.request import RunRequest
from eval_pipeline.runs.staleness import StaleCell
from eval_pipeline.runs.staleness import stale_cells as _stale_cells
from eval_pipeline.service.instance import dagster_instance
from eval_pipeline.service.launching import QUIET, RUN_TAG, ensure_partitions, execute_in_process, finished
from eval_pipeline.service.location import daemon_run_config
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.runtime import Runtime

BACKFILL_TAG = "dagster/backfill"
DAEMON_FRESH_SECONDS = 120.0  # a backfill daemon heartbeat older than this: no daemon will take the backfill
ASSETS = [dg.AssetKey("generations"), dg.AssetKey("grades"), dg.AssetKey("metrics")]


def stale_cells(rt: Runtime, *, suite_id: str | None = None, model: str | None = None,
                judge_model: str | None = None, rubric: str | None = None, org_id: str | None = None
                ) -> list[dict[str, Any]]:
    """The stale (model, task) cells of one suite (`suite_id`) or of every suite (of `org_id`, when given),
    optionally of one model: each with its latest completed result and the reasons (runs/staleness.py).
    `judge_model` and `rubric` name the judge graded with now. Raises NotFound for an unknown suite (or
    one of another org)."""
    return [cell.to_dict() for sid in _suite_ids(rt, suite_id, org_id)
            for cell in _suite_stale(rt, sid, suite_id is None, model=model, judge_model=judge_model, rubric=rubric)]


def _suite_stale(rt: Runtime, suite_id: str, listing: bool, **kwargs: Any) -> list[StaleCell]:
    """A suite's stale cells; when `listing` every suite, one without versions has none (not an error)."""
    try:
        return _stale_cells(rt.catalog, suite_id, **kwargs)
    except NotFound:
        if listing:
            return []
        raise


def _suite_ids(rt: Runtime, suite_id: str | None, org_id: str | None) -> list[str]:
    q = select(t.Suite.id).order_by(t.Suite.created_at, t.Suite.id)
    if org_id is not None:
        q = q.where(t.Suite.org_id == org_id)
    if suite_id is not None:
        q = q.where(t.Suite.id == suite_id)
    with rt.catalog.session() as s:
        found = list(s.scalars(q))
    if suite_id is not None and not found:
        raise NotFound("suite", suite_id)
    return found


def backfill_daemon_alive(instance: dg.DagsterInstance) -> bool:
    """Whether a Dagster daemon's backfill loop has beaten within DAEMON_FRESH_SECONDS."""
    beat = instance.get_daemon_heartbeats().get("BACKFILL")
    return beat is not None and time.time() - beat.timestamp < DAEMON_FRESH_SECONDS


def _check_revisions(rt: Runtime, models: list[Any], revisions: Any, *, folders: bool
                     ) -> list[tuple[str, dict[str, Any]]]:
    """[(name, options)] of each revision of the one registered vLLM model in `models`, named
    `<model>@<label>`: with `folders`, an existing local folder replaces the model's path (label: the
    folder's name); otherwise the string is a revision of the model's Hub repo (label: the revision), which
    a model at a local folder has none of. A name registered already with other options is refused, never
    replaced. Raises InvalidInput naming the field."""
    if not isinstance(revisions, list) or not revisions or not all(isinstance(r, str) and r for r in revisions):
        raise InvalidInput("revisions", "must be a non-empty list of Hub revisions or checkpoint folders")
    if len(models) != 1:
        raise InvalidInput("models", "a backfill of revisions takes exactly one model")
    registered = {m.name: m for m in list_models(rt.catalog, implicit=True)}
    base = registered.get(models[0])
    if base is None:
        raise InvalidInput("models[0]", f"{models[0]!r} is not a registered model")
    if base.backend != "vllm":
        raise InvalidInput("revisions", f"model {base.name!r} is served over HTTP ({base.backend}): no revisions")
    local_base = Path(getattr(base.options, "path", "")).expanduser().is_dir()
    out = []
    for i, rev in enumerate(revisions):
        folder = Path(rev).expanduser()
        options = base.options.model_dump()
        if folders and folder.is_dir():
            options["path"], label = str(folder.resolve()), folder.resolve().name
        elif local_base:
            raise InvalidInput(f"revisions[{i}]", f"{rev!r} is not a checkpoint folder" + (
                "" if folders else " (over HTTP only Hub revisions of a Hub model are taken)") +
                f", and {base.name!r} is a local folder with no Hub revisions")
        else:
            options["revision"], label = rev, rev
        name = f"{base.name}@{label}"
        known = registered.get(name)
        if known is not None and known.options.model_dump() != options:
            raise InvalidInput(f"revisions[{i}]", f"model {name!r} is registered already with other settings "
                                                  "(another checkpoint of the same name?); rename the folder")
        out.append((name, options))
    if len({name for name, _ in out}) != len(out):
        raise InvalidInput("revisions", "two revisions have the same label")
    return out


def checkpoint_models(rt: Runtime, checked: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Register the models _check_revisions checked (an identical registration is kept as it is)."""
    registered = {m.name for m in list_models(rt.catalog, implicit=True)}
    return [name if name in registered else add_model(rt.catalog, name, options).name for name, options in checked]


def create_backfill(rt: Runtime, body: dict[str, Any], asset_graph: BaseAssetGraph[Any], *, job: dg.JobDefinition | None
                    = None, wait: bool = False, org_id: str | None = None, team_id: str | None = None,
                    created_by: str | None = None, folders: bool = True) -> list[dict[str, Any]]:
    """Backfill `body`: {"suite_id", "suite_version"?, "models": [...], "revisions"?: [...] (then exactly one
    model), "task_ids"?: [...], "stale"?: bool, "run"?: {run settings: max_samples_per_task, generation,
    name...}}. With `stale`, exactly the stale cells (of `suite_id`, or of every suite: one backfill per
    suite), of `models` when given. Each backfill is one eval run and one Dagster backfill; with `wait`
    (and `job`, the generation job), executed here before returning. `folders` lets revisions name local
    checkpoint folders (the CLI; not over HTTP, where a caller must not reach the server's files).
    Returns one object per backfill:
    {backfill_id, run_id, suite_id, models, partitions, status}. Raises InvalidInput naming the field,
    NotFound for an unknown suite (or one of another org), Conflict without `wait` when no Dagster daemon
    runs backfills (it would never start), before anything is written."""
    if not isinstance(body, dict):
        raise InvalidInput("body", "must be a JSON object")
    if wait and job is None:
        raise InvalidInput("wait", "needs the generation job to execute here")
    settings = body.get("run") or {}
    if not isinstance(settings, dict):
        raise InvalidInput("run", "must be an object of run settings")
    stale = body.get("stale", False)
    if not isinstance(stale, bool):
        raise InvalidInput("stale", "must be true or false")
    for field in ("suite_id", "suite_version"):
        if body.get(field) is not None and not isinstance(body[field], (str if field == "suite_id" else int)):
            raise InvalidInput(field, "must be a string" if field == "suite_id" else "must be an integer")
    models = body.get("models")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) for m in models)):
        raise InvalidInput("models", "must be a list of model names")
    revisions, checked = body.get("revisions"), None
    if stale:
        extra = [f for f in ("revisions", "task_ids", "suite_version") if body.get(f) is not None]
        if extra:
            raise InvalidInput(extra[0], "does not apply with stale: the stale cells decide the models and tasks")
        plans: list[Plan] = _stale_plans(rt, body, org_id)
    else:
        if not body.get("suite_id"):
            raise InvalidInput("suite_id", "is required")
        _suite_ids(rt, str(body["suite_id"]), org_id)
        if not models:
            raise InvalidInput("models", "must be a non-empty list of model names")
        plans = [(str(body["suite_id"]), list(models), body.get("task_ids"), None)]
        if revisions is not None:
            checked = _check_revisions(rt, models, revisions, folders=folders)
            names = [name for name, _ in checked]
            settings = {**settings, "metadata": {**(settings.get("metadata") or {}), CHECKPOINTS: json.dumps(names)}}
            RunRequest.parse(_request(body, settings, plans[0][0], names, plans[0][2], "x" * 8))  # names, metadata
    for suite_id, run_models, task_ids, _ in plans:  # the runs as they will be made, before anything is written
        base_models = run_models if checked is None else list(models or [])
        request = _request(body, settings, suite_id, base_models, task_ids, "x" * 8)
        check_run_request(rt.catalog, RunRequest.parse(request), org_id=org_id)
    if not wait and plans and not backfill_daemon_alive(dagster_instance(rt)):
        raise Conflict("no Dagster daemon has run backfills in the last 2 minutes (start `dagster dev` or "
                       "`dagster-daemon run`), so this backfill would never start; execute it here instead "
                       "(`eval-pipeline backfill ... --wait`)")
    if checked is not None:
        plans = [(plans[0][0], checkpoint_models(rt, checked), plans[0][2], None)]
    out = []
    for suite_id, models, task_ids, cells in plans:
        backfill_id = make_new_backfill_id()
        request = _request(body, settings, suite_id, models, task_ids, backfill_id)
        run = runs.create_run(rt.catalog, rt.lake, request, origin=f"dagster:{backfill_id}", status="in_progress",
                              cells=cells, org_id=org_id, team_id=team_id, created_by=created_by)
        out.append(_launch(rt, run["id"], backfill_id, asset_graph, job, wait))
    return out


Plan = tuple[str, list[str], list[str] | None, set[tuple[str, str]] | None]  # suite, models, task ids, cells


def _request(body: dict[str, Any], settings: dict[str, Any], suite_id: str, models: list[str],
             task_ids: list[str] | None, backfill_id: str) -> dict[str, Any]:
    """The eval run request of one backfill."""
    return {**settings, "suite_id": suite_id, "models": models,
            "name": settings.get("name") or f"backfill {backfill_id}".strip(),
            **({"suite_version": body["suite_version"]} if body.get("suite_version") else {}),
            **({"task_ids": task_ids} if task_ids else {})}


def _stale_plans(rt: Runtime, body: dict[str, Any], org_id: str | None) -> list[Plan]:
    wanted = set(body.get("models") or [])
    plans: list[Plan] = []
    for suite_id in _suite_ids(rt, body.get("suite_id"), org_id):
        cells = [c for c in _suite_stale(rt, suite_id, body.get("suite_id") is None) if not wanted or c.model in wanted]
        if cells:
            plans.append((suite_id, sorted({c.model for c in cells}), sorted({c.task_id for c in cells}),
                          {(c.model, c.task_id) for c in cells}))
    return plans


def _partition_keys(rt: Runtime, run_id: str) -> list[str]:
    return [f"{p.model_key}|{p.task_key}" for p in runs.run_partitions(rt.catalog, run_id)]


def _launch(rt: Runtime, run_id: str, backfill_id: str, asset_graph: BaseAssetGraph[Any],
            job: dg.JobDefinition | None, wait: bool) -> dict[str, Any]:
    instance = dagster_instance(rt)
    parts = runs.run_partitions(rt.catalog, run_id)
    ensure_partitions(instance, {p.model_key for p in parts}, {p.task_key for p in parts})
    if wait:
        assert job is not None  # create_backfill checked
        return _execute(rt, instance, run_id, backfill_id, asset_graph, job)
    instance.add_backfill(_backfill(rt, instance, run_id, backfill_id, asset_graph))
    return _summary(rt, run_id, backfill_id, "requested")


def _backfill(rt: Runtime, instance: dg.DagsterInstance, run_id: str, backfill_id: str,
              asset_graph: BaseAssetGraph[Any]) -> PartitionBackfill:
    run = runs.get_run(rt.catalog, run_id)
    return PartitionBackfill.from_asset_partitions(
        backfill_id=backfill_id, asset_graph=asset_graph, partition_names=_partition_keys(rt, run_id),
        asset_selection=ASSETS, backfill_timestamp=time.time(), tags={RUN_TAG: run_id},
        dynamic_partitions_store=instance, all_partitions=False, title=run.get("name"),
        description=f"eval run {run_id}: {', '.join(run['models'])} on suite {run['suite_id']} "
                    f"v{run['suite_version']}", run_config=daemon_run_config(rt.settings))


def _execute(rt: Runtime, instance: dg.DagsterInstance, run_id: str, backfill_id: str,
             asset_graph: BaseAssetGraph[Any], job: dg.JobDefinition) -> dict[str, Any]:
    """Execute the eval run's unfinished partitions here, tagged with the backfill; then record the
    backfill, completed, with the partitions that materialised and those that failed."""
    results: list[ExecutionResult] = execute_in_process(instance, rt.catalog, rt.lake, run_id, job, run_config=QUIET,
                                                        tags={BACKFILL_TAG: backfill_id})
    backfill = _backfill(rt, instance, run_id, backfill_id, asset_graph)
    # materialised: the partition's metrics are written (done alone means its generations are)
    done = {f"{p.model_key}|{p.task_key}" for p in runs.run_partitions(rt.catalog, run_id) if finished(rt.lake, p)}
    keys = set(_partition_keys(rt, run_id))
    data = backfill.asset_backfill_data
    assert data is not None  # an asset backfill
    target = data.target_subset
    done_subset = AssetGraphSubset.from_asset_partition_set(
        {AssetKeyPartitionKey(a, k) for a in ASSETS for k in done}, asset_graph)
    failed_subset = AssetGraphSubset.from_asset_partition_set(
        {AssetKeyPartitionKey(a, k) for a in ASSETS for k in keys - done}, asset_graph)
    data = data._replace(requested_subset=target, materialized_subset=done_subset,
                         failed_and_downstream_subset=failed_subset)
    ok = keys == done and all(r.success for r in results)
    status = BulkActionStatus.COMPLETED_SUCCESS if ok else BulkActionStatus.COMPLETED_FAILED
    existing = instance.get_backfill(backfill_id)
    record = (backfill.with_asset_backfill_data(data, dynamic_partitions_store=instance, asset_graph=asset_graph)
              .with_status(status).with_end_timestamp(time.time()))  # type: ignore[no-untyped-call]
    if existing is None:
        instance.add_backfill(record)
    else:
        instance.update_backfill(record)
    return _summary(rt, run_id, backfill_id, "completed" if ok else "failed")


def resume_backfill(rt: Runtime, backfill_id: str, asset_graph: BaseAssetGraph[Any], job: dg.JobDefinition
                    ) -> dict[str, Any]:
    """Execute here what a backfill left unfinished (a `wait` that crashed, or failed cells): the finished
    cells are not redone. Its Dagster runs left started by a process that is gone are marked failed first.
    Raises NotFound for a backfill no eval run was made for, Conflict for one the daemon runs (requested)
    or whose runs are still executing in a live process."""
    run_id = runs.run_for_origin(rt.catalog, f"dagster:{backfill_id}")
    if run_id is None:
        raise NotFound("backfill", backfill_id)
    instance = dagster_instance(rt)
    record = instance.get_backfill(backfill_id)
    if record is not None and record.status == BulkActionStatus.REQUESTED:
        raise Conflict(f"backfill {backfill_id} is the Dagster daemon's to run (requested); resume it there")
    _fail_orphaned_runs(instance, backfill_id)
    if runs.get_run(rt.catalog, run_id)["status"] == "failed":
        runs.resume_run(rt.catalog, run_id)  # unfinished partitions back to pending, their chunks kept
    return _execute(rt, instance, run_id, backfill_id, asset_graph, job)


def _fail_orphaned_runs(instance: dg.DagsterInstance, backfill_id: str) -> None:
    """Mark failed the backfill's Dagster runs still started whose process is gone (they ran in-process,
    on this machine: their events carry its pid); Conflict when one's process is alive."""
    started = instance.get_runs(dg.RunsFilter(tags={BACKFILL_TAG: backfill_id}, statuses=[
        dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]))
    for run in started:
        pids = {ev.pid for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)
                if (ev := e.get_dagster_event()) is not None and ev.pid}
        if any(_alive(pid) for pid in pids):
            raise Conflict(f"backfill {backfill_id} is still executing (Dagster run {run.run_id}, process "
                           f"{', '.join(map(str, sorted(pids)))})")
        instance.report_run_failed(run, "its process ended without finishing the run (resumed here)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _summary(rt: Runtime, run_id: str, backfill_id: str, status: str) -> dict[str, Any]:
    run = runs.get_run(rt.catalog, run_id)
    return {"backfill_id": backfill_id, "run_id": run_id, "suite_id": run["suite_id"], "models": run["models"],
            "partitions": len(_partition_keys(rt, run_id)), "status": status, "run_status": run["status"]}
