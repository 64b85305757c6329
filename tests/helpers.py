"""Shared test helpers: state snapshots and generated lm-eval folders."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from sqlalchemy import MetaData, select

from eval_pipeline.harness.synthetic import SyntheticTask, write_run

TASKS = [SyntheticTask("gen_mc", "multiple_choice", 12), SyntheticTask("gen_math", "generate_until", 9)]


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


def copy_real(real_fixtures: Path, dest: Path) -> Path:
    shutil.copytree(real_fixtures, dest, ignore=shutil.ignore_patterns("README.md"))
    return dest


def corrupt_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
