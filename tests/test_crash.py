"""A crash mid-import (SIGKILL) loses at most the run in flight; re-running completes the import."""
import json
import signal
import sqlite3
import subprocess
import time

from helpers import cli_command, cli_env, generated_folder

from eval_pipeline.demo.synthetic import SyntheticTask
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.lake import Lake
from eval_pipeline.suites.versions import list_suites

MODELS = tuple(f"o/m{i:02d}" for i in range(12))


def _committed_runs(db) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("select count(*) from historical_runs").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_killed_import_resumes_without_duplicates(tmp_path):
    tasks = [SyntheticTask("crash_mc", "multiple_choice", 1500), SyntheticTask("crash_gen", "generate_until", 1500)]
    src = generated_folder(tmp_path / "src", models=MODELS, tasks=tasks)
    home = tmp_path / "home"
    env = cli_env(home)
    cmd = cli_command("import", "path", str(src), "--suite-name", "crash")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while _committed_runs(home / "catalog.db") < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_after = _committed_runs(home / "catalog.db")
    assert 2 <= killed_after < len(MODELS), "the import finished before it could be killed"

    catalog, lake = Catalog(f"sqlite:///{home / 'catalog.db'}"), Lake(str(home / "lake"))
    assert len(lake.list("historical_samples")) <= killed_after + 1  # at most the run in flight extra
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["skipped_runs"], result["imported_runs"]) == (killed_after, len(MODELS) - killed_after)
    assert _committed_runs(home / "catalog.db") == len(MODELS)
    assert len(lake.list("historical_samples")) == len(MODELS)
    (suite,) = list_suites(catalog)
    assert (suite["name"], suite["latest_version"], result["created_suite_version"]) == ("crash", 1, True)
