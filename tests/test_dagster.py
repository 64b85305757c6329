"""Dagster: the Definitions load, and assets materialise for real on a PostgreSQL-backed instance."""
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml
from helpers import generated_folder
from sqlalchemy import create_engine, event, text
from sqlalchemy.pool import NullPool

from assets.historical import historical_metrics_agree, historical_results, historical_samples_valid
from assets.suites import suite_inputs_valid, suite_versions
from eval_pipeline.orchestration.definitions import defs
from resources import CatalogResource, HubResource, LakeResource

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_load_and_validate():
    dg.Definitions.validate_loadable(defs)
    from eval_pipeline.service.location import DEFINITIONS_ATTRIBUTE, DEFINITIONS_MODULE, LOCATION_NAME

    # runs executed in-process carry this origin: it must be the workspace's, or the UI will not list them
    assert yaml.safe_load((ROOT / "workspace.yaml").read_text()) == {"load_from": [{"python_module": {
        "module_name": DEFINITIONS_MODULE, "attribute": DEFINITIONS_ATTRIBUTE, "location_name": LOCATION_NAME}}]}
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "historical_results", "suite_versions", "generations", "grades", "metrics", "export_bundles"}
    assert {k.name for k in graph.asset_check_keys} == {
        "historical_samples_valid", "historical_metrics_agree", "suite_inputs_valid", "generations_complete",
        "generations_healthy", "grades_valid", "metrics_valid", "no_regression", "bundle_checksums_valid"}
    assert {j.name for j in defs.resolve_all_job_defs()} >= {"historical_import", "suite_publish", "generation",
                                                             "export"}
    assert {s.name for s in defs.sensors} == {"queued_runs", "generation_succeeded", "generation_failed",
                                              "queued_export_tasks", "schedule_ticks", "scheduled_run_outcomes"}
    jobs = [j for j in defs.resolve_all_job_defs() if not j.name.startswith("__")]
    assert all(j.description for j in jobs), [j.name for j in jobs if not j.description]
    assert "records one new eval run" in defs.resolve_job_def("generation").description  # the UI backfill
    # the test's lake is a local folder: the export asset's kind says so, not s3
    assert defs.resolve_assets_def("export_bundles").specs_by_key[dg.AssetKey("export_bundles")].kinds == {
        "parquet", "filesystem"}
    gen = graph.get(dg.AssetKey("generations"))
    assert gen.pools == {"gpu"}
    node = defs.resolve_assets_def("generations").node_def
    assert node.tags["dagster-celery/queue"] == "gpu"
    assert '"nvidia.com/gpu": "1"' in node.tags["dagster-k8s/config"]


def test_workspace_loads_with_the_dagster_cli(tmp_path):
    import subprocess
    import sys

    from helpers import cli_env

    dagster = Path(sys.executable).parent / "dagster"
    out = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=ROOT,
                         env=cli_env(tmp_path, DAGSTER_HOME=str(tmp_path)), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    location = "eval_pipeline"
    assert f"Validation successful for code location {location}" in out.stdout + out.stderr


@pytest.fixture
def pg_instance(pg_url, tmp_path, monkeypatch):
    """A Dagster instance configured by deploy/dagster.yaml, storage in a fresh PostgreSQL database."""
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    for var, value in {"DAGSTER_PG_HOST": url.host, "DAGSTER_PG_PORT": str(url.port),
                       "DAGSTER_PG_USERNAME": url.username, "DAGSTER_PG_PASSWORD": url.password or "unused",
                       "DAGSTER_PG_DB": url.database, "DAGSTER_HOME": str(home)}.items():
        monkeypatch.setenv(var, value)
    with dg.DagsterInstance.get() as instance:
        yield instance


def _resources(catalog_url, lake_dir):
    return {"catalog": CatalogResource(database_url=catalog_url), "lake": LakeResource(url=str(lake_dir)),
            "hub": HubResource()}


def _sources(path: Path, folder: Path, **extra) -> dict:
    path.write_text(yaml.safe_dump({"imports": [{"source": {"type": "path", "url": str(folder)}, **extra}]}))
    return {"ops": {"historical_results": {"config": {"sources_file": str(path)}}}}


def test_materialise_on_a_postgres_instance(pg_instance, pg_url, tmp_path):
    folder = generated_folder(tmp_path / "src")
    resources = _resources(pg_url, tmp_path / "lake")
    result = dg.materialize([historical_results, historical_samples_valid, historical_metrics_agree],
                            instance=pg_instance, resources=resources,
                            run_config=_sources(tmp_path / "sources.yaml", folder, suite_name="pg"))
    assert result.success
    with create_engine(pg_url).connect() as conn:  # the run really went to PostgreSQL
        assert conn.execute(text("select count(*) from runs")).scalar() == 1
    meta = result.asset_materializations_for_node("historical_results")[0].metadata
    assert (meta["imported_runs"].value, meta["imported_samples"].value) == (2, 42)
    assert {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()} == {
        "historical_samples_valid": True, "historical_metrics_agree": True}

    (suite_id,) = pg_instance.get_dynamic_partitions("suite")
    published = dg.materialize([suite_versions, suite_inputs_valid], instance=pg_instance,
                               resources=resources, partition_key=suite_id)
    assert published.success
    meta = published.asset_materializations_for_node("suite_versions")[0].metadata
    assert (meta["latest_version"].value, meta["tasks"].value, meta["docs"].value) == (1, 2, 21)
    assert [e.passed for e in published.get_asset_check_evaluations()] == [True]
    records = pg_instance.fetch_materializations(dg.AssetKey("suite_versions"), limit=5).records
    assert len(records) == 2  # the import's record of version 1, then this publication


def _sessions(pg_url: str) -> int:
    """Connections opened so far to the test database (PostgreSQL's statistics, read after a flush)."""
    with create_engine(pg_url, poolclass=NullPool).connect() as conn:
        conn.execute(text("select pg_stat_force_next_flush()"))
        return conn.execute(text("select sessions from pg_stat_database where datname = current_database()")).scalar()


def test_the_deployed_storage_reuses_pooled_connections_and_survives_their_loss(pg_instance, pg_url):
    """deploy/dagster.yaml's storages share one pooled engine per process (orchestration/pg_storage.py):
    a hundred storage calls open a handful of connections, not one each; a table found is not looked up
    again; a connection the server dropped is replaced before use."""
    from eval_pipeline.orchestration.pg_storage import MAX_OVERFLOW, POOL_SIZE

    storages = (pg_instance.run_storage, pg_instance.event_log_storage, pg_instance.schedule_storage)
    assert len({id(s._engine) for s in storages}) == 1  # noqa: SLF001  one engine for the database
    with dg.DagsterInstance.get() as again:  # a second instance of the process (a Celery step's) shares it
        assert again.event_log_storage._engine is pg_instance.event_log_storage._engine  # noqa: SLF001

    before = _sessions(pg_url)
    for i in range(50):
        pg_instance.add_dynamic_partitions("model", [f"m{i}"])
        assert pg_instance.has_dynamic_partition("model", f"m{i}")
    opened = _sessions(pg_url) - before - 1  # the count's own session
    assert opened <= POOL_SIZE + MAX_OVERFLOW, opened

    statements: list[str] = []
    event.listen(pg_instance.event_log_storage._engine, "before_cursor_execute",  # noqa: SLF001
                 lambda conn, cursor, statement, *args: statements.append(statement))
    assert pg_instance.event_log_storage.supports_asset_checks and pg_instance.has_dynamic_partition("model", "m0")
    asked = len(statements)
    assert pg_instance.event_log_storage.supports_asset_checks and pg_instance.has_dynamic_partition("model", "m1")
    assert len(statements) - asked == 1, statements[asked:]  # the partition's lookup; the tables were known

    with create_engine(pg_url, poolclass=NullPool).connect() as conn:  # the server drops every other session
        conn.execute(text("select pg_terminate_backend(pid) from pg_stat_activity "
                          "where datname = current_database() and pid <> pg_backend_pid()"))
    assert pg_instance.get_dynamic_partitions("model")[:2] == ["m0", "m1"]


def test_checks_fail_on_bad_data(tmp_path, real_fixtures):
    folder = generated_folder(tmp_path / "src", models=("o/m",))
    samples = next((folder / "o__m").glob("samples_gen_mc_*.jsonl"))
    lines = samples.read_text().splitlines()
    samples.write_text("\n".join(lines + [lines[0]]) + "\n")  # one doc twice
    resources = _resources(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "lake")
    with dg.instance_for_test() as instance:
        result = dg.materialize([historical_results, historical_samples_valid], instance=instance,
                                resources=resources, run_config=_sources(tmp_path / "s.yaml", folder),
                                raise_on_error=False)
        (evaluation,) = result.get_asset_check_evaluations()
        assert not evaluation.passed
        assert "expect_compound_columns_to_be_unique" in evaluation.metadata["summary"].value

        shutil.copytree(real_fixtures / "v0.3_pythia", tmp_path / "pythia")
        run_config = _sources(tmp_path / "p.yaml", tmp_path / "pythia", suite_name="no inputs")
        dg.materialize([historical_results], instance=instance, resources=resources, run_config=run_config)
        suite_id = [k for k in instance.get_dynamic_partitions("suite")][-1]
        published = dg.materialize([suite_versions, suite_inputs_valid], instance=instance,
                                   resources=resources, partition_key=suite_id, raise_on_error=False)
        (check,) = published.get_asset_check_evaluations()
        assert not check.passed and check.metadata["tasks"].value == 65


def test_one_bad_source_fails_the_run_but_not_the_others(tmp_path):
    from eval_pipeline.stores.catalog import Catalog
    from eval_pipeline.suites.versions import list_suites

    good = generated_folder(tmp_path / "good", models=("o/m",))
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump({"imports": [
        {"source": {"type": "path", "url": str(tmp_path / "missing")}, "suite_name": "bad"},
        {"source": {"type": "path", "url": str(good)}, "suite_name": "good"},
    ]}))
    catalog_url = f"sqlite:///{tmp_path / 'c.db'}"
    with dg.instance_for_test() as instance:
        result = dg.materialize([historical_results], instance=instance, raise_on_error=False,
                                resources=_resources(catalog_url, tmp_path / "lake"),
                                run_config={"ops": {"historical_results": {"config": {"sources_file": str(sources)}}}})
    assert not result.success
    failure = result.failure_data_for_node("historical_results").error
    assert "imports[0]" in failure.message and "source folder not found" in failure.message
    assert [s["name"] for s in list_suites(Catalog(catalog_url))] == ["good"]
