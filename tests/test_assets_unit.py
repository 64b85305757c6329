"""Each asset and asset check called directly, with a context from dg.build_asset_context (or, for checks,
the context dg.build_asset_check_context builds), on a real SQLite catalog and local lake: no job, no run
launcher, one asset at a time. The end-to-end tests (test_dagster.py, test_runs.py, test_exports.py) run
the same code through jobs.

Dagster 1.13's direct invocation leaves three gaps, filled here with Dagster's own classes (no code of this
project is replaced):
- `context.run` raises DagsterInvalidPropertyError on a directly invoked asset or check, and the eval-run
  assets (generations, grades, metrics and their checks) read the eval run id from `context.run.tags`
  (bundle_checksums_valid reads its export id there too). `RunContext` and `RunCheckContext` answer `run`
  with a real dg.DagsterRun carrying the tags the sensor or `execute_in_process` gives a Dagster run.
- `context.add_asset_metadata` raises AttributeError on a directly invoked asset (it needs a step
  execution context). `RunContext` keeps what the asset adds, per partition key, after checking that the
  key is one of the context's partitions.
- dg.build_asset_check_context takes no partition key and cannot be entered, so resources with a set-up
  (CatalogResource) cannot be opened with it. `_check_context` builds the same
  DirectAssetCheckExecutionContext over dg.build_op_context(partition_key=...), entered.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.execution.context.invocation import DirectAssetCheckExecutionContext, DirectAssetExecutionContext
from helpers import EVAL_TASKS, TASKS, corrupt_json, generated_folder
from sqlalchemy import func, select

from assets.exports import bundle_checksums_valid, export_bundles
from assets.generations import generation_checks, generations
from assets.grades import grades, grades_valid
from assets.historical import historical_metrics_agree, historical_results, historical_samples_valid
from assets.metrics import metrics, metrics_checks
from assets.suites import suite_inputs_valid, suite_versions
from eval_pipeline import runs
from eval_pipeline.execution.finish import complete_if_done
from eval_pipeline.exports.tasks import bundle_location, create_export, get_export
from eval_pipeline.service.launching import RUN_TAG, ensure_partitions
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.suites.versions import list_suites
from resources import CatalogResource, GenerationThresholds, HubResource, LakeResource

# Two tasks of the eval suite (one of each request kind), two docs each: the cheapest real generation.
UNIT_TASKS = ("ev_gen_a", "ev_mc_a")
SAMPLES = 2
CHOICES = 4  # every multiple-choice doc of the synthetic tasks has four choices


class RunContext(DirectAssetExecutionContext):
    """dg.build_asset_context's context with a Dagster run (see the module's docstring)."""

    def __init__(self, built: DirectAssetExecutionContext, tags: dict[str, str]):
        super().__init__(built.op_execution_context)
        self._run = dg.DagsterRun(job_name="__ASSET_JOB", run_id=str(uuid.uuid4()), tags=tags)
        self.asset_metadata: dict[str, dict] = {}

    @property
    def run(self) -> dg.DagsterRun:
        return self._run

    def add_asset_metadata(self, metadata, asset_key=None, partition_key=None) -> None:
        assert partition_key in self.partition_keys, partition_key
        self.asset_metadata.setdefault(partition_key, {}).update(metadata)


class RunCheckContext(DirectAssetCheckExecutionContext):
    """A partitioned check's context over build_op_context, with a Dagster run."""

    def __init__(self, op_context, tags: dict[str, str], specs=(), keys=()):
        super().__init__(op_context)
        self._run = dg.DagsterRun(job_name="__ASSET_JOB", run_id=str(uuid.uuid4()), tags=tags)
        self._specs, self._keys = list(specs), list(keys)

    @property
    def partition_keys(self):
        return self._keys

    @property
    def run(self) -> dg.DagsterRun:
        return self._run

    @property
    def check_specs(self):
        return self._specs


@dataclass
class Checked:
    """A partitioned check's evaluations over a Dagster run's partitions, by partition key."""

    evaluations: dict[str, dg.AssetCheckEvaluation]

    @property
    def passed(self) -> bool:
        return all(e.passed for e in self.evaluations.values())

    @property
    def failing(self) -> dict[str, str]:
        return {k: e.description for k, e in self.evaluations.items() if not e.passed}


def _resources(catalog_url: str, lake_url: str) -> dict:
    return {"catalog": CatalogResource(database_url=catalog_url), "lake": LakeResource(url=lake_url),
            "hub": HubResource(), "thresholds": GenerationThresholds()}


def _values(metadata: dict) -> dict:
    """Metadata as plain values (MetadataValue -> its value)."""
    return {k: v.value if isinstance(v, dg.MetadataValue) else v for k, v in metadata.items()}


# --- historical_results and its checks --------------------------------------------------------------


@pytest.fixture
def unit_resources(sqlite_catalog, lake) -> dict:
    return _resources(str(sqlite_catalog.engine.url), lake.url)


def _sources_file(path: Path, *imports: dict) -> str:
    path.write_text(yaml.safe_dump({"imports": list(imports)}))
    return str(path)


def _import(instance, resources, sources_file: str) -> dg.MaterializeResult:
    with dg.build_asset_context(resources=resources, instance=instance,
                                asset_config={"sources_file": sources_file}) as context:
        return historical_results(context)


def test_historical_results_imports_each_source_once_and_records_the_suite(tmp_path, sqlite_catalog,
                                                                            unit_resources):
    folder = generated_folder(tmp_path / "src")  # two models, gen_mc (12 docs) and gen_math (9 docs)
    sources = _sources_file(tmp_path / "sources.yaml", {"source": {"type": "path", "url": str(folder)},
                                                        "suite_name": "unit"})
    instance = dg.DagsterInstance.ephemeral()

    first = _import(instance, unit_resources, sources)

    assert isinstance(first, dg.MaterializeResult)
    meta = _values(first.metadata)
    assert meta["sources_file"] == sources
    docs = sum(task.n_docs for task in TASKS)
    assert (meta["imported_runs"], meta["skipped_runs"], meta["imported_samples"], meta["rejected_files"]) == (
        2, 0, 2 * docs, 0)
    (suite,) = list_suites(sqlite_catalog)
    assert suite["name"] == "unit" and suite["latest_version"] == 1
    assert suite["id"] in meta["imports"]  # the markdown table names the suite
    # the new suite version is a partition of suite_versions with a runless materialisation
    assert instance.get_dynamic_partitions("suite") == [suite["id"]]
    (record,) = instance.fetch_materializations(dg.AssetKey("suite_versions"), limit=5).records
    assert record.partition_key == suite["id"]
    assert record.asset_materialization.metadata["version"].value == 1
    with sqlite_catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(t.HistoricalRun)) == 2

    again = _values(_import(instance, unit_resources, sources).metadata)
    assert (again["imported_runs"], again["skipped_runs"], again["imported_samples"]) == (0, 2, 0)
    assert [s["id"] for s in list_suites(sqlite_catalog)] == [suite["id"]]
    assert len(instance.fetch_materializations(dg.AssetKey("suite_versions"), limit=5).records) == 1



def test_historical_results_without_a_sources_file_imports_nothing(tmp_path, sqlite_catalog, unit_resources):
    missing = str(tmp_path / "absent.yaml")
    meta = _values(_import(dg.DagsterInstance.ephemeral(), unit_resources, missing).metadata)
    assert meta["sources_file"] == missing
    assert {k: meta[k] for k in ("imported_runs", "skipped_runs", "imported_samples", "rejected_files")} == {
        "imported_runs": 0, "skipped_runs": 0, "imported_samples": 0, "rejected_files": 0}
    assert list_suites(sqlite_catalog) == []


def test_historical_results_fails_on_a_bad_source_after_importing_the_others(tmp_path, sqlite_catalog,
                                                                             unit_resources):
    good = generated_folder(tmp_path / "good", models=("o/m",))
    sources = _sources_file(tmp_path / "sources.yaml",
                            {"source": {"type": "path", "url": str(tmp_path / "missing")}, "suite_name": "bad"},
                            {"source": {"type": "path", "url": str(good)}, "suite_name": "good"})
    with pytest.raises(dg.Failure) as failure:
        _import(dg.DagsterInstance.ephemeral(), unit_resources, sources)
    assert failure.value.description.startswith("imports[0]: ")
    assert "source folder not found" in failure.value.description
    meta = _values(failure.value.metadata)
    assert (meta["imported_sources"], meta["imported_runs"], meta["imported_samples"]) == (
        1, 1, sum(task.n_docs for task in TASKS))
    assert [s["name"] for s in list_suites(sqlite_catalog)] == ["good"]


@contextmanager
def _check_context(resources: dict, partition_key: str | None = None, tags: dict | None = None):
    """A check's context: dg.build_asset_check_context's, over an op context opened as a context manager
    (its resources set up and torn down; the check context itself cannot be entered), with a partition
    key for partitioned checks and a Dagster run with `tags` for the checks that read the run."""
    with dg.build_op_context(resources=resources, partition_key=partition_key) as op_context:
        yield (DirectAssetCheckExecutionContext(op_context) if tags is None
               else RunCheckContext(op_context, tags))


def test_historical_checks_before_any_import_and_after_a_clean_one(tmp_path, unit_resources):
    catalog, lake = unit_resources["catalog"], unit_resources["lake"]
    with _check_context({"catalog": catalog, "lake": lake}) as context:
        empty = [historical_samples_valid(context), historical_metrics_agree(context)]
    assert [(r.passed, r.metadata["summary"].value) for r in empty] == [(True, "nothing imported yet")] * 2

    folder = generated_folder(tmp_path / "src")
    _import(dg.DagsterInstance.ephemeral(), unit_resources,
            _sources_file(tmp_path / "s.yaml", {"source": {"type": "path", "url": str(folder)}}))
    with _check_context({"catalog": catalog, "lake": lake}) as context:
        samples, agree = historical_samples_valid(context), historical_metrics_agree(context)
    assert samples.passed and samples.metadata["expectations"].value > 0
    assert agree.passed and agree.metadata["expectations"].value > 0


def test_historical_checks_fail_on_a_duplicated_doc_and_a_misreported_mean(tmp_path, unit_resources):
    folder = generated_folder(tmp_path / "src", models=("o/m",))
    samples = next((folder / "o__m").glob("samples_gen_mc_*.jsonl"))
    lines = samples.read_text().splitlines()
    samples.write_text("\n".join(lines + [lines[0]]) + "\n")  # one doc twice
    corrupt_json(next((folder / "o__m").glob("results_*.json")),
                 lambda doc: doc["results"]["gen_math"].update({"exact_match,strict-match": 0.99}))
    _import(dg.DagsterInstance.ephemeral(), unit_resources,
            _sources_file(tmp_path / "s.yaml", {"source": {"type": "path", "url": str(folder)}}))
    resources = {"catalog": unit_resources["catalog"], "lake": unit_resources["lake"]}
    with _check_context(resources) as context:
        samples_check, agree = historical_samples_valid(context), historical_metrics_agree(context)
    assert not samples_check.passed
    assert "expect_compound_columns_to_be_unique" in samples_check.metadata["summary"].value
    assert not agree.passed


# --- suite_versions and suite_inputs_valid -----------------------------------------------------------


def _home_resources(home) -> dict:
    return _resources(home.settings.database_url, home.settings.lake_url)


def test_suite_versions_publishes_the_latest_versions_manifest(eval_home):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("suite", [eval_home.suite_id])
    with dg.build_asset_context(resources=_home_resources(eval_home), instance=instance,
                                partition_key=eval_home.suite_id) as context:
        result = suite_versions(context)
    meta = _values(result.metadata)
    assert (meta["suite_id"], meta["name"], meta["latest_version"]) == (eval_home.suite_id, "eval suite", 1)
    assert (meta["tasks"], meta["docs"]) == (len(EVAL_TASKS), sum(task.n_docs for task in EVAL_TASKS))
    assert meta["manifest"] == f"suites/{eval_home.suite_id}/manifest.json"
    manifest = json.loads(eval_home.lake.read_bytes(meta["manifest"]))
    assert manifest["id"] == eval_home.suite_id
    latest = manifest["versions"][-1]["manifest"]["tasks"]
    assert sorted(task["name"] for task in latest) == sorted(task.name for task in EVAL_TASKS)
    for task in EVAL_TASKS:
        assert f"| {task.name} " in meta["latest_tasks"]


def _inputs_path(home, task_name: str) -> str:
    with home.catalog.session() as s:
        return s.scalar(select(t.File.path).join(t.TaskVersion, t.TaskVersion.inputs_file_id == t.File.id)
                        .join(t.Task, t.Task.id == t.TaskVersion.task_id).where(t.Task.name == task_name))


def _suite_check(home) -> dg.AssetCheckResult:
    with _check_context(_home_resources(home), partition_key=home.suite_id) as context:
        return suite_inputs_valid(context)


def test_suite_inputs_valid_passes_then_fails_on_a_duplicated_doc(eval_home):
    clean = _suite_check(eval_home)
    assert clean.passed and clean.metadata["tasks"].value == len(EVAL_TASKS)
    assert clean.metadata["expectations"].value > 0

    import pyarrow as pa

    path = _inputs_path(eval_home, "ev_mc_b")
    table = eval_home.lake.read_table(path)
    eval_home.lake.write_table(path, pa.concat_tables([table, table.slice(0, 1)]))
    broken = _suite_check(eval_home)
    assert not broken.passed
    assert "expect_compound_columns_to_be_unique" in broken.metadata["summary"].value


# --- generations, grades, metrics, export_bundles: one eval run's partitions -------------------------


class UnitRun:
    """An eval run of the tiny model on UNIT_TASKS, SAMPLES docs each, started as the sensor starts one:
    its partitions added to the instance, the run in progress, a Dagster run tagged with its id."""

    def __init__(self, home, **body):
        with home.catalog.session() as s:
            task_ids = dict(s.execute(select(t.Task.name, t.Task.id).where(t.Task.name.in_(UNIT_TASKS))).all())
        self.home, self.task_ids = home, task_ids
        self.run = runs.create_run(home.catalog, home.lake, {
            "suite_id": home.suite_id, "models": ["tiny"], "task_ids": [task_ids[n] for n in UNIT_TASKS],
            "max_samples_per_task": SAMPLES, "generation": {"max_gen_toks": 4}, **body})
        self.id = self.run["id"]
        self.parts = {p.task_key: p for p in runs.run_partitions(home.catalog, self.id)}
        self.instance = dg.DagsterInstance.ephemeral()
        ensure_partitions(self.instance, {p.model_key for p in self.parts.values()}, set(self.parts))
        runs.mark_started(home.catalog, self.id)
        self.keys = {task: f"{p.model_key}|{task}" for task, p in self.parts.items()}  # "tiny|ev_gen_a"
        self.resources = _home_resources(home)

    @property
    def tags(self) -> dict[str, str]:
        first, last = sorted(self.keys.values())[0], sorted(self.keys.values())[-1]
        return {RUN_TAG: self.id, "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last}

    def context(self) -> RunContext:
        """A context over both partitions (one Dagster run per contiguous block, as the sensor plans)."""
        built = dg.build_asset_context(resources=self.resources, instance=self.instance,
                                       partition_key_range=dg.PartitionKeyRange(
                                           self.tags["dagster/asset_partition_range_start"],
                                           self.tags["dagster/asset_partition_range_end"]))
        return RunContext(built, self.tags)

    def materialise(self, asset) -> dict[str, dict]:
        """Call the asset; what it added as metadata, by task key, as plain values."""
        with self.context() as context:
            assert asset(context) is None
            assert set(context.asset_metadata) == set(self.keys.values())
            return {key.split("|")[1]: _values(md) for key, md in context.asset_metadata.items()}

    def check(self, check, resources: dict | None = None, name: str | None = None) -> Checked:
        """A partitioned check over both partitions, its Dagster run tagged as the asset's was: one
        evaluation per partition, then the check's output. For a multi-asset check, the evaluations of
        its check `name`, after one output per check."""
        op_context = dg.build_op_context(resources=resources or self.resources, instance=self.instance,
                                         partition_key_range=dg.PartitionKeyRange(
                                             self.tags["dagster/asset_partition_range_start"],
                                             self.tags["dagster/asset_partition_range_end"]))
        # called below Dagster's direct invocation, which accepts only Output events from a generator; a
        # real run records these evaluations (tests/test_runs.py, tests/test_browser_ui.py)
        op = check.node_def
        with op_context:
            resources = {key: getattr(op_context.resources, key) for key in op.required_resource_keys}
            events = list(op.compute_fn.decorated_fn(
                RunCheckContext(op_context, self.tags, check.check_specs, sorted(self.keys.values())), **resources))
        specs = list(check.check_specs)
        outputs = [e for e in events if isinstance(e, dg.Output)]
        assert [type(e) for e in events[-len(specs):]] == [dg.Output] * len(specs) == [type(e) for e in outputs]
        name = name or check.check_key.name
        assert {e.check_name for e in events[:-len(specs)]} == {spec.name for spec in specs}
        return Checked({e.partition: e for e in events[:-len(specs)] if e.check_name == name})

    def planned(self, task: str) -> int:
        return self.parts[task].planned


@pytest.fixture
def unit_run(eval_home) -> UnitRun:
    return UnitRun(eval_home)


def unit_run_chunks(unit_run: UnitRun, task: str) -> list[dict]:
    return runs.partition_by_keys(unit_run.home.catalog, unit_run.id, "tiny", task).chunks


def _failing(result: Checked) -> dict:
    return result.failing


def test_generations_answer_every_planned_request_then_skip_what_is_written(unit_run):
    home = unit_run.home
    assert {task: unit_run.planned(task) for task in UNIT_TASKS} == {"ev_gen_a": SAMPLES,
                                                                     "ev_mc_a": SAMPLES * CHOICES}
    first = unit_run.materialise(generations)

    for task in UNIT_TASKS:
        md, planned = first[task], unit_run.planned(task)
        assert (md["eval_run_id"], md["model"], md["task_id"]) == (unit_run.id, "tiny", unit_run.task_ids[task])
        assert (md["rows"], md["generated"], md["from_cache"], md["failed"]) == (planned, planned, 0, 0)
        assert md["chunks_written"] >= 1 and md["chunks_skipped"] == 0
        assert md["path"] == f"generations/{unit_run.id}/tiny/{task}"
        assert md["engine"]["backend"] == "vllm"
        chunks = home.lake.list(md["path"])
        assert len(chunks) == md["chunks_written"]
        indexes = sorted(i for c in chunks for i in home.lake.read_table(c).column("request_index").to_pylist())
        assert indexes == list(range(planned))
    assert sum(first[task]["engine_loaded"] for task in UNIT_TASKS) <= 1  # one engine for the block
    done = runs.get_run(home.catalog, unit_run.id, partitions=True)
    assert {p["status"] for p in done["partitions"]} == {"done"}
    assert done["request_counts"]["completed"] == done["request_counts"]["total"] == SAMPLES * (1 + CHOICES)

    again = unit_run.materialise(generations)  # a retried Dagster run: every chunk is in the lake already
    for task in UNIT_TASKS:
        md = again[task]
        assert (md["rows"], md["generated"], md["from_cache"], md["chunks_written"]) == (
            unit_run.planned(task), 0, 0, 0)
        assert md["chunks_skipped"] == first[task]["chunks_written"] and not md["engine_loaded"]
        assert md["engine"] == first[task]["engine"]  # what answered, as recorded with the partition


def test_generations_of_a_cancelled_run_stop_with_a_failure_and_write_nothing(unit_run):
    runs.cancel_run(unit_run.home.catalog, unit_run.id)
    with unit_run.context() as context, pytest.raises(dg.Failure) as failure:
        generations(context)
    assert "stopped taking work (not_wanted)" in failure.value.description
    assert failure.value.metadata["eval_run_id"].value == unit_run.id
    assert context.asset_metadata == {}
    assert unit_run.home.lake.list(f"generations/{unit_run.id}") == []
    assert runs.get_run(unit_run.home.catalog, unit_run.id)["status"] == "cancelled"


def test_generations_launched_without_an_eval_run_record_one_for_the_backfill(eval_home):
    """A backfill from the UI has no eval run tag: the first asset records an eval run for the backfill,
    and the next asset of the same backfill finds it."""
    instance = dg.DagsterInstance.ephemeral()
    ensure_partitions(instance, {"tiny"}, {"ev_mc_a"})
    tags, key = {"dagster/backfill": "unitfill"}, "tiny|ev_mc_a"
    resources = _home_resources(eval_home)
    contexts = [RunContext(dg.build_asset_context(resources=resources, instance=instance, partition_key=key), tags)
                for _ in range(2)]
    with contexts[0] as context:
        generations(context)
    (md,) = context.asset_metadata.values()
    run_id = runs.run_for_origin(eval_home.catalog, "dagster:unitfill")
    assert run_id is not None and md["eval_run_id"] == run_id
    (listed,) = runs.list_runs(eval_home.catalog)
    assert listed["id"] == run_id and listed["models"] == ["tiny"]
    n_docs = next(task.n_docs for task in EVAL_TASKS if task.name == "ev_mc_a")
    assert md["rows"] == listed["request_counts"]["total"] == n_docs * CHOICES  # the whole task, no limit
    with contexts[1] as context:
        grades(context)
    (md,) = context.asset_metadata.values()
    assert md["eval_run_id"] == run_id and md["docs"] == n_docs
    assert len(runs.list_runs(eval_home.catalog)) == 1


def _generation_checks(unit_run: UnitRun) -> tuple[Checked, Checked]:
    return (unit_run.check(generation_checks, name="generations_complete"),
            unit_run.check(generation_checks, name="generations_healthy"))


def test_generation_checks_pass_then_catch_a_lost_row_and_failed_requests(unit_run):
    import pyarrow as pa

    unit_run.materialise(generations)
    complete, healthy = _generation_checks(unit_run)
    assert complete.passed and healthy.passed, (_failing(complete), _failing(healthy))
    assert set(complete.evaluations) == set(healthy.evaluations) == set(unit_run.keys.values())
    for key, e in healthy.evaluations.items():  # each partition's measured rates beside its thresholds
        md = _values(e.metadata)
        assert md["expectations"] > 0 and md["requests"] == unit_run.planned(key.split("|")[1])
        assert (md["failed_rate"], md["empty_rate"]) == (0.0, 0.0)
        assert (md["max_failed_rate"], md["max_empty_rate"]) == (0.05, 0.5)
    assert all(_values(e.metadata)["planned"] == _values(e.metadata)["rows"] for e in complete.evaluations.values())

    lake = unit_run.home.lake
    (gen_chunk, *_) = [c["path"] for c in unit_run_chunks(unit_run, "ev_gen_a")]
    table = lake.read_table(gen_chunk)
    lake.write_table(gen_chunk, table.slice(0, table.num_rows - 1))  # a request without its row
    (mc_chunk, *_) = [c["path"] for c in unit_run_chunks(unit_run, "ev_mc_a")]
    table = lake.read_table(mc_chunk)
    errors = ["backend said no"] + table.column("error").to_pylist()[1:]  # 1 of 8 failed: over 5%
    lake.write_table(mc_chunk, table.set_column(table.schema.get_field_index("error"), "error",
                                                pa.array(errors, table.schema.field("error").type)))

    complete, healthy = _generation_checks(unit_run)
    assert not complete.passed and set(_failing(complete)) == {unit_run.keys["ev_gen_a"]}
    assert complete.evaluations[unit_run.keys["ev_mc_a"]].passed  # the other partition keeps its own result
    assert not healthy.passed and set(_failing(healthy)) == {unit_run.keys["ev_mc_a"]}
    measured = _values(healthy.evaluations[unit_run.keys["ev_mc_a"]].metadata)
    assert measured["failed_rate"] == pytest.approx(1 / unit_run.planned("ev_mc_a"))
    lenient = {**unit_run.resources, "thresholds": GenerationThresholds(max_failed_rate=0.2)}
    assert unit_run.check(generation_checks, lenient, "generations_healthy").passed  # the limit comes from the resource


def test_grades_score_every_generated_doc(unit_run):
    import pyarrow as pa

    unit_run.materialise(generations)
    graded = unit_run.materialise(grades)

    lake = unit_run.home.lake
    for task in UNIT_TASKS:
        md = graded[task]
        assert (md["eval_run_id"], md["docs"], md["failed_docs"]) == (unit_run.id, SAMPLES, 0)
        assert md["gradability"] == "native" and md["gradability_reason"] == ""
        assert "judge_path" not in md and "embedding_path" not in md  # rules only for these tasks
        table = lake.read_table(md["path"])
        assert table.num_rows == md["rows"] > 0
        assert len(set(table.column("doc_id").to_pylist())) == SAMPLES
        metric = {"ev_mc_a": "acc", "ev_gen_a": "exact_match"}[task]
        assert metric in table.column("metric").to_pylist() and f"| {metric} " in md["means"]
    assert unit_run.check(grades_valid).passed

    path = graded["ev_mc_a"]["path"]
    table = lake.read_table(path)
    scores = [2.0] + table.column("score").to_pylist()[1:]  # an accuracy of 2
    lake.write_table(path, table.set_column(table.schema.get_field_index("score"), "score",
                                            pa.array(scores, table.schema.field("score").type)))
    broken = unit_run.check(grades_valid)
    assert not broken.passed and set(_failing(broken)) == {unit_run.keys["ev_mc_a"]}


def test_metrics_aggregate_the_grades_with_error_bars(unit_run):
    import pyarrow as pa

    unit_run.materialise(generations)
    graded = unit_run.materialise(grades)
    measured = unit_run.materialise(metrics)

    lake = unit_run.home.lake
    for task in UNIT_TASKS:
        md = measured[task]
        assert md["eval_run_id"] == unit_run.id
        assert md["path"] == f"metrics/{unit_run.id}/tiny/{task}/metrics.parquet"
        rows = lake.read_table(md["path"]).to_pylist()
        assert rows and all(r["n"] == SAMPLES and r["failed"] == 0 for r in rows)
        assert all(r["stderr"] >= 0 and r["ci_low"] <= r["value"] <= r["ci_high"] for r in rows)
        scores = lake.read_table(graded[task]["path"]).to_pylist()
        for r in rows:  # each value is the mean of its metric's grades
            mine = [g["score"] for g in scores if (g["metric"], g["filter"]) == (r["metric"], r["filter"])]
            assert r["value"] == pytest.approx(sum(mine) / len(mine))
            assert f"| {r['metric']} " in md["metrics"]
        assert unit_run.id in md["run_report"]
    assert unit_run.check(metrics_checks, name="metrics_valid").passed

    path = measured["ev_gen_a"]["path"]
    table = lake.read_table(path)
    lake.write_table(path, table.set_column(table.schema.get_field_index("n"), "n",
                                            pa.array([SAMPLES + 1] * table.num_rows, table.schema.field("n").type)))
    broken = unit_run.check(metrics_checks, name="metrics_valid")
    assert not broken.passed and set(_failing(broken)) == {unit_run.keys["ev_gen_a"]}


def test_export_bundles_publish_a_completed_runs_bundle_that_verifies(unit_run):
    home = unit_run.home
    for asset in (generations, grades, metrics):
        unit_run.materialise(asset)
    assert complete_if_done(home.catalog, home.lake, unit_run.id)  # what the run status sensor does
    export = create_export(home.catalog, {"run_id": unit_run.id, "content": ["prompt", "prediction", "metrics"]})
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("export", [export["id"]])

    with dg.build_asset_context(resources=unit_run.resources, instance=instance,
                                partition_key=export["id"]) as context:
        assert export_bundles(context) is None
        meta = _values(context.get_output_metadata("result"))

    assert (meta["run_id"], meta["storage_type"], meta["format"]) == (unit_run.id, "system", "bundle")
    assert meta["content"] == "prompt, prediction, metrics"
    assert meta["rows"] == len(UNIT_TASKS) * SAMPLES  # one row per doc
    done = get_export(home.catalog, export["id"])
    assert done["status"] == "succeeded" and meta["location"] == done["location"]
    fs, folder = bundle_location(home.catalog, home.lake, export["id"])
    assert set(meta["files"]) == {"manifest.json", "samples.parquet", "samples.jsonl", "metrics.json"}
    for name, sha in meta["files"].items():
        if name != "manifest.json":  # the manifest lists the others' sums, not its own
            assert hashlib.sha256(fs.cat_file(f"{folder}/{name}")).hexdigest() == sha

    tags = {"dagster/partition": export["id"]}
    with _check_context(unit_run.resources, tags=tags) as context:
        verified = bundle_checksums_valid(context)
    assert verified.passed and verified.metadata["export_id"].value == export["id"]
    fs.pipe_file(f"{folder}/samples.jsonl", b"{}\n")
    with _check_context(unit_run.resources, tags=tags) as context:
        tampered = bundle_checksums_valid(context)
    assert not tampered.passed
    assert tampered.metadata["summary"].value == "samples.jsonl: sha256 differs from the manifest"
