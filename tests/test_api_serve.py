"""`eval-pipeline serve --execute` as a process: its log has the requests but never a body, the caller's
Hub token or an API key; neither reaches the catalog, the lake or Dagster's event log."""
import subprocess
import time

import dagster as dg
import httpx
from helpers import cli_command, cli_env, generated_folder
from hub_server import HubRepo, HubServer
from services import free_port

from eval_pipeline.service.instance import dagster_instance
from eval_pipeline.service.lineage import HISTORICAL_RESULTS
from eval_pipeline.stores.keys import create_key

HUB_TOKEN = "hf_caller_secret_5b1f0c"


def test_the_served_process_logs_requests_but_no_secrets(eval_home, tmp_path, monkeypatch):
    gen = generated_folder(tmp_path / "gen")
    repo = HubRepo(private=True)
    repo.commit({str(p.relative_to(gen)): p.read_bytes() for p in gen.rglob("*") if p.is_file()})
    key = create_key(eval_home.catalog, "acme")["key"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}", "X-HuggingFace-Token": HUB_TOKEN, "X-On-Behalf-Of": "ana"}
    with HubServer(tokens={HUB_TOKEN}) as hub:
        hub.repos["acme/results"] = repo
        env = cli_env(eval_home.settings.home, HF_ENDPOINT=hub.url)
        server = subprocess.Popen(cli_command("serve", "--port", str(port), "--execute"), env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            body = {"source": {"type": "huggingface", "repo": "acme/results"}, "suite_name": "logged",
                    "metadata": {"note": "body-marker-7d2"}}
            done = httpx.post(f"{url}/api/v1/llm/evals/imports/huggingface-results", json=body, headers=headers,
                              timeout=120)
            assert done.status_code == 200, done.text
            assert done.json()["imported_runs"] == 2
            refused = httpx.post(f"{url}/api/v1/llm/evals/imports/huggingface-results", json={**body, "limit_files": 0},
                                 headers=headers)
            assert refused.status_code == 400
            bad_key = httpx.get(f"{url}/api/v1/llm/evals/runs", headers={"Authorization": "Bearer nope"})
            assert bad_key.status_code == 401
        finally:
            server.terminate()
            log, _ = server.communicate(timeout=60)
    assert "POST /api/v1/llm/evals/imports/huggingface-results" in log and "200" in log  # access log is on
    for secret in (HUB_TOKEN, key, "body-marker-7d2"):
        assert secret not in log
    files = [p for p in eval_home.settings.home.rglob("*") if p.is_file()]
    assert not [p for p in files if HUB_TOKEN.encode() in p.read_bytes() or key.encode() in p.read_bytes()]
    monkeypatch.setenv("DAGSTER_HOME", str(eval_home.settings.dagster_home))
    events = dagster_instance(eval_home).fetch_materializations(HISTORICAL_RESULTS, limit=10).records
    assert events and events[0].asset_materialization.metadata["source_repo"].value == "acme/results"
    assert all(HUB_TOKEN not in repr(e) and key not in repr(e) for e in events)
    assert isinstance(events[0].asset_materialization, dg.AssetMaterialization)
