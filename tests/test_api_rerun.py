"""rerun-failed and overview over the API (the `meetkai-mka1` SDK): a run whose endpoint failed two
requests is queued again under new sensor run keys, regenerates exactly those two, and completes; the
overview's score, counts and retries follow."""
import dagster as dg
import httpx
import pytest
from openai_server import FlakyOpenAI
from sqlalchemy import select
from test_api_runs import _sdk

from eval_pipeline import runs
from eval_pipeline.generation.requests import plan_requests
from eval_pipeline.models.registry import add_model
from eval_pipeline.orchestration.definitions import defs
from eval_pipeline.orchestration.job_names import GENERATION_JOB
from eval_pipeline.orchestration.sensors import queued_runs
from eval_pipeline.results.overview import headline_score
from eval_pipeline.service.launching import execute_in_process
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.keys import create_key
from resources import CatalogResource, LakeResource


def _gen_task(home):
    with home.catalog.session() as s:
        task_id = s.scalar(select(t.Task.id).where(t.Task.name == "ev_gen_a"))
        path = s.scalar(select(t.File.path).join(t.TaskVersion, t.TaskVersion.inputs_file_id == t.File.id)
                        .where(t.TaskVersion.task_id == task_id))
    return task_id, [r.context for r in plan_requests(home.lake, path, {}, None)]


def test_rerun_failed_regenerates_only_the_failures(eval_home, api, quiet_run_config):
    from mka1 import errors as mka1_errors

    key = create_key(eval_home.catalog, "acme")["key"]
    sdk, _ = _sdk(api, key)
    task_id, prompts = _gen_task(eval_home)
    instance = dg.DagsterInstance.ephemeral()
    with FlakyOpenAI() as server:
        add_model(eval_home.catalog, "flaky", {"backend": "openai", "base_url": server.url})
        server.fail_prompts |= {prompts[0], prompts[5]}
        run = sdk.llm.evals.create_run(suite_id=eval_home.suite_id, models=["flaky"], task_ids=[task_id],
                                       generation={"max_retries": 0, "max_gen_toks": 4})
        with pytest.raises(mka1_errors.SDKDefaultError) as e:
            sdk.llm.evals.rerun_failed_samples(run_id=run.id)  # still queued
        assert e.value.status_code == 409
        (result,) = execute_in_process(instance, eval_home.catalog, eval_home.lake, run.id,
                                       defs.resolve_job_def(GENERATION_JOB), run_config=quiet_run_config)
        assert not result.success  # 2 of 12 failed: over the 5% the blocking check allows
        failed = sdk.llm.evals.get_run(run_id=run.id)
        assert failed.status == "failed" and failed.request_counts.failed == 2
        before = sdk.llm.evals.get_run_overview(run_id=run.id)
        assert (before.trials.failed, before.trials.retried, before.avg_reward) == (2, 0, None)

        server.fail_prompts.clear()
        attempts = dict(server.attempts)
        again = sdk.llm.evals.rerun_failed_samples(run_id=run.id)
        assert again.status == "queued" and again.error is None and again.failed_at is None
        with dg.build_sensor_context(instance=instance, resources={"catalog": CatalogResource(),
                                                                    "lake": LakeResource()}) as ctx:
            requests = queued_runs(ctx).run_requests
        assert [r.run_key.split(":")[1] for r in requests] == ["1"]  # a new key: the first was used
        (result,) = execute_in_process(instance, eval_home.catalog, eval_home.lake, run.id,
                                       defs.resolve_job_def(GENERATION_JOB), run_config=quiet_run_config)
        assert result.success
        sent = {p: n - attempts.get(p, 0) for p, n in server.attempts.items() if n != attempts.get(p, 0)}
        assert sent == {prompts[0]: 1, prompts[5]: 1}  # only the failures went to the endpoint again
    done = sdk.llm.evals.get_run(run_id=run.id)
    assert done.status == "completed" and (done.request_counts.completed, done.request_counts.failed) == (12, 0)
    samples = sdk.llm.evals.list_samples(run_id=run.id, limit=100).data
    assert len(samples) == 12 and all(s.status == "completed" and s.error is None for s in samples)
    overview = sdk.llm.evals.get_run_overview(run_id=run.id)
    assert overview.trials.model_dump() == {"total": 12, "completed": 12, "failed": 0, "errored": 0, "retried": 2}
    assert overview.avg_reward == headline_score(done.metrics) is not None
    assert overview.metric == "reward" and overview.tokens.input == done.tokens.input
    exact = sdk.llm.evals.get_run_overview(run_id=run.id, metric="exact_match")
    (entry,) = [v for k, v in done.metrics["flaky"]["ev_gen_a"].items() if k.startswith("exact_match,")][:1]
    assert exact.avg_reward == entry["value"]
    assert sdk.llm.evals.get_run_overview(run_id=run.id, metric="no_such_metric").avg_reward is None
    with pytest.raises(mka1_errors.SDKDefaultError) as e:
        sdk.llm.evals.rerun_failed_samples(run_id=run.id)
    assert e.value.status_code == 409 and "no failed samples" in e.value.body
    other = httpx.get(f"{api}/api/v1/llm/evals/runs/{run.id}/overview",
                      headers={"Authorization": f"Bearer {create_key(eval_home.catalog, 'globex')['key']}"})
    assert other.status_code == 404
    assert runs.get_run(eval_home.catalog, run.id)["attempt"] == 1
