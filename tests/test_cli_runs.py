"""The `models` and `runs` commands in a subprocess: JSON out, exit codes, and an endpoint's API key
that reaches the endpoint and nothing else."""
import json
from pathlib import Path

from helpers import generated_folder, run_cli
from openai_server import FlakyOpenAI

SECRET = "sk-test-9f8e7d6c5b4a"


def _all_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


def test_models_and_runs_commands(tmp_path):
    home = tmp_path / "home"
    data = generated_folder(tmp_path / "data", models=("org/m",))
    imported = run_cli(home, "import", "path", str(data))
    assert imported.returncode == 0, imported.stderr
    suite_id = json.loads(imported.stdout)["suite_id"]

    with FlakyOpenAI() as server:
        added = run_cli(home, "models", "add", "remote", "--backend", "openai", "--base-url", server.url,
                        "--api-key-env", "REMOTE_KEY", "--header", "X-Team=evals", "--default")
        assert added.returncode == 0, added.stderr
        assert json.loads(added.stdout)["api_key_env"] == "REMOTE_KEY"
        listed = json.loads(run_cli(home, "models", "list").stdout)["data"]
        assert [(m["name"], m["backend"], m["default"]) for m in listed] == [("remote", "openai", True)]

        bad = run_cli(home, "runs", "create", "--suite-id", suite_id, "--model", "auto",
                      "--max-workflow-sample-activities", "10")
        assert bad.returncode == 2
        assert "max_workflow_sample_activities" in json.loads(bad.stderr)["error"]["message"]

        tasks = json.loads(run_cli(home, "tasks", "list").stdout)["data"]
        gen_task = next(t["id"] for t in tasks if t["name"] == "gen_math")
        out = run_cli(home, "runs", "create", "--suite-id", suite_id, "--model", "auto", "--max-gen-toks", "5",
                      "--task-id", gen_task,
                      "--metadata", "purpose=test", "--name", "via cli", "--wait",
                      env_extra={"REMOTE_KEY": SECRET})
        assert out.returncode == 0, out.stderr[-3000:]
        run = json.loads(out.stdout)
        assert run["status"] == "completed" and run["metadata"] == {"purpose": "test"}, run["error"]
        assert run["request_counts"]["completed"] == run["request_counts"]["total"] > 0
        assert server.headers
        assert all(h.get("authorization") == f"Bearer {SECRET}" for h in server.headers)
        assert all(h.get("x-team") == "evals" for h in server.headers)
    assert SECRET.encode() not in _all_bytes(home)  # catalog, lake and Dagster storage

    got = json.loads(run_cli(home, "runs", "get", run["id"]).stdout)
    assert got["id"] == run["id"] and got["name"] == "via cli"
    page = json.loads(run_cli(home, "runs", "list", "--limit", "1").stdout)
    assert page["data"][0]["id"] == run["id"] and page["has_more"] is False

    missing = run_cli(home, "runs", "get", "eval_run_nope")
    assert missing.returncode == 2 and json.loads(missing.stderr)["error"]["code"] == "not_found"
    assert run_cli(home, "models", "remove", "remote").returncode == 0
    assert json.loads(run_cli(home, "models", "list").stdout)["data"] == []
    assert run_cli(home, "models", "remove", "remote").returncode == 2
