"""Deployment-level nightly evals: a YAML file (EVAL_PIPELINE_NIGHTLY, else <home>/nightly.yaml, beside
the import sources file) whose entries each become a Dagster schedule:

    nightly:
      - name: candidates_regression        # the Dagster schedule's name (letters, digits, _)
        suites: [regression suite]         # suite ids or names (of `org`)
        models: [candidate-a, candidate-b]
        cron: "0 2 * * *"
        timezone: Europe/Berlin            # default UTC
        org: org_default                   # whose suites and runs (default org_default)
        run: {generation: {max_gen_toks: 64}}   # optional: the rest of the run request

Each tick makes one eval run per suite (models x the suite's active version's tasks)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator
from sqlalchemy import select

from eval_pipeline.errors import InvalidInput, NotFound
from eval_pipeline.runs.request import RunRequest
from eval_pipeline.schedules.request import check_cron_fields, check_timezone
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.validation import Strict, parse_model

NAME = re.compile(r"^[A-Za-z0-9_]{1,100}$")  # Dagster's rule for definition names


class NightlyEntry(Strict):
    """One entry of the nightly file."""

    name: str
    suites: list[str] = Field(min_length=1, max_length=50)
    models: list[str] = Field(min_length=1, max_length=20)
    cron: str = Field(max_length=255)
    timezone: str = "UTC"
    org: str = Field("org_default", min_length=1, max_length=128)
    run: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.match(v):
            raise ValueError("must be 1-100 letters, digits or _ (it names a Dagster schedule)")
        return v

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        return check_timezone(v)

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, v: str) -> str:
        return check_cron_fields(v)

    def run_request(self, suite_id: str) -> RunRequest:
        """The run request of one tick for one suite. Raises InvalidInput naming `run.<field>`."""
        for field in ("suite_id", "suite_version", "models"):
            if field in self.run:
                raise InvalidInput(f"run.{field}", "is set by the entry itself")
        run = dict(self.run)
        # a night must ask the model again: an endpoint's weights can change under the same name
        run["generation"] = {"use_cache": False, **(run.get("generation") or {})}
        try:
            return RunRequest.parse({**run, "suite_id": suite_id, "models": self.models})
        except InvalidInput as e:
            raise InvalidInput(f"run.{e.field}", e.message) from None

    def origin(self, suite_id: str) -> str:
        """The origin of this entry's runs on one suite: `nightly:<name>:<suite id>`."""
        return f"nightly:{self.name}:{suite_id}"


def load_nightly(path: Path, *, required: bool = False) -> list[NightlyEntry]:
    """The entries of the nightly file at `path` ([] when it does not exist, unless `required`). Raises
    InvalidInput naming the file and entry (`<path>: nightly[1].cron`) for anything wrong, or a name used
    twice. Suites and models are looked up at each tick (they may be created after the file)."""
    if not path.exists():
        if required:
            raise InvalidInput(str(path), "the nightly file does not exist")
        return []
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise InvalidInput(str(path), f"not valid YAML: {e}") from None
    entries = doc.get("nightly") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise InvalidInput(str(path), "expected a top-level 'nightly:' list")
    out: list[NightlyEntry] = []
    for i, raw in enumerate(entries):
        try:
            entry = parse_model(NightlyEntry, raw)
            for suite in entry.suites:
                entry.run_request(suite)
        except InvalidInput as e:
            raise InvalidInput(f"{path}: nightly[{i}].{e.field}", e.message) from None
        if any(o.name == entry.name for o in out):
            raise InvalidInput(f"{path}: nightly[{i}].name", f"{entry.name!r} is used twice")
        out.append(entry)
    return out


def resolve_suite(catalog: Catalog, org_id: str, suite: str) -> str:
    """The id of the suite `suite` names in `org_id` (an id, else a name). Raises NotFound."""
    with catalog.session() as s:
        row = s.get(t.Suite, suite)
        if row is not None and row.org_id == org_id:
            return row.id
        found = s.scalar(select(t.Suite.id).where(t.Suite.org_id == org_id, t.Suite.name == suite))
        if found is None:
            raise NotFound("suite", suite, f"of org {org_id}")
        return found
