"""Identifiers in the brief's shape (`eval_suite_<32 hex>`) and slugs for Dagster partition keys."""
from __future__ import annotations

import hashlib
import re
import uuid

PREFIXES = {
    "suite": "eval_suite_",
    "suite_version": "eval_sver_",
    "task": "eval_task_",
    "import": "eval_import_",
    "historical_run": "eval_hrun_",
    "run": "eval_run_",
    "file": "file_",
    "export": "eval_export_",
    "api_key": "key_",
    "schedule": "eval_sched_",
    "schedule_tick": "eval_tick_",
    "webhook_delivery": "eval_whd_",
}


def new_id(kind: str) -> str:
    """A fresh id for `kind` (a key of PREFIXES): its prefix and 32 random hex digits; KeyError for other kinds."""
    return PREFIXES[kind] + uuid.uuid4().hex


_NOT_SLUG = re.compile(r"[^a-z0-9_.-]+")


def slugify(name: str, max_len: int = 96) -> str:
    """A partition-key-safe slug (no `| , [ ]`); a short hash keeps distinct names distinct."""
    base = _NOT_SLUG.sub("-", name.lower()).strip("-.") or "x"
    if base == name and len(base) <= max_len:
        return base
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{base[: max_len - 9]}-{digest}"
