"""Shared test helpers: state snapshots and generated lm-eval folders."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import MetaData, select

from eval_pipeline.demo.synthetic import SyntheticTask, write_run

TASKS = [SyntheticTask("gen_mc", "multiple_choice", 12), SyntheticTask("gen_math", "generate_until", 9)]
# Four tasks for eval runs: both request kinds, small enough for the tiny model on a CPU.
EVAL_TASKS = [SyntheticTask("ev_mc_a", "multiple_choice", 10), SyntheticTask("ev_gen_a", "generate_until", 12),
              SyntheticTask("ev_mc_b", "multiple_choice", 8), SyntheticTask("ev_gen_b", "generate_until", 10)]
# Run config for in-process Dagster runs in tests: the console logger at ERROR only. Tests take it as the
# `quiet_run_config` fixture (conftest.py); module-level helpers that are not fixtures import it from here.
# (The product's eval_pipeline.service.launching.QUIET keeps warnings; the tests have always logged errors only.)
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def snapshot(catalog, lake) -> tuple:
    """Every catalog row and every lake file's bytes: equal snapshots mean nothing was written."""
    meta = MetaData()
    meta.reflect(catalog.engine)
    rows = {}
    with catalog.engine.connect() as conn:
        for name, table in sorted(meta.tables.items()):
            rows[name] = sorted(map(repr, conn.execute(select(table)).all()))
    files = {p: hashlib.sha256(lake.read_bytes(p)).hexdigest() for p in lake.list()}
    return rows, files


def generated_folder(root: Path, models=("org/model-a", "org/model-b"), tasks=TASKS) -> Path:
    for i, model in enumerate(models):
        write_run(root, model, tasks, seed=i, timestamp=f"2026-02-0{i + 1}T00-00-00.000001")
    return root


def corrupt_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment minus any eval_pipeline or Dagster setting, pointed at `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVAL_PIPELINE_", "DAGSTER_"))}
    return {**env, "EVAL_PIPELINE_HOME": str(home), **extra}


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "eval_pipeline.cli.main", *args]


def run_cli(home: Path, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(*args), env=cli_env(home, **(env_extra or {})), capture_output=True,
                          text=True, timeout=300)
