"""The CLI as users run it: the demo (the README's main command), suites and tasks listings."""
import json

from helpers import run_cli as _cli


def test_demo_imports_through_dagster_and_is_repeatable(tmp_path):
    home = tmp_path / "home"
    first = _cli(home, "demo")
    assert first.returncode == 0, first.stderr
    assert "imported runs 2, skipped 0, samples 190, rejected files 0" in first.stdout
    assert first.stdout.count(" passed ") == 9 and "FAILED" not in first.stdout and "MISMATCH" not in first.stdout
    assert "status completed, requests {'total': 290, 'completed': 290, 'failed': 0}" in first.stdout
    assert "tiny-demo|arith_mul_gen" in first.stdout
    assert "acc_norm,none" in first.stdout and "95% interval" in first.stdout
    assert "bundle_checksums_valid    passed" in first.stdout and "samples.parquet  95" in first.stdout
    assert "/report.html" in first.stdout
    assert f"DAGSTER_HOME={home / 'dagster'}" in first.stdout
    second = _cli(home, "demo")
    assert "imported runs 0, skipped 2, samples 0" in second.stdout

    suites = json.loads(_cli(home, "suites", "list").stdout)["data"]
    assert [(s["name"], s["latest_version"]) for s in suites] == [("demo: arithmetic", 1)]
    suite = json.loads(_cli(home, "suites", "get", suites[0]["id"]).stdout)
    assert [t["name"] for t in suite["versions"][0]["manifest"]["tasks"]] == [
        "arith_add_mc", "arith_add_mc_hard", "arith_mul_gen"]
    tasks = json.loads(_cli(home, "tasks", "list").stdout)["data"]
    assert {t["name"]: t["n_docs"] for t in tasks} == {"arith_add_mc": 40, "arith_add_mc_hard": 25,
                                                       "arith_mul_gen": 30}
    assert {t["request_kind"] for t in tasks} == {"loglikelihood", "generate_until"}
