"""The historical import's inputs and result, in the brief's shape (`eval.import`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal, Union

from pydantic import Field

from eval_pipeline.stores.sources import DEFAULT_HF_REPO
from eval_pipeline.validation import Strict, parse_model

DEFAULT_SUITE_NAME = "Historical lm-eval harness results"
DEFAULT_LISTING_LIMIT = 50


class HubSourceSpec(Strict):
    """A Hugging Face dataset repo at a revision (branch, tag or commit); `files` names results files (paths in
    the repo) instead of discovering them under `path_prefix`."""

    type: Literal["huggingface"] = "huggingface"
    repo: str = Field(DEFAULT_HF_REPO, min_length=3, pattern=r"^[\w.-]+/[\w.-]+$")
    revision: str = Field("main", min_length=1, max_length=255)
    path_prefix: str | None = None
    files: list[str] | None = Field(None, min_length=1)


class PathSourceSpec(Strict):
    """A local folder or an fsspec URL (file://, s3://) holding lm-eval output; `files` as in HubSourceSpec."""

    type: Literal["path"] = "path"
    url: str = Field(min_length=1)
    path_prefix: str | None = None
    files: list[str] | None = Field(None, min_length=1)


SourceSpec = Annotated[Union[HubSourceSpec, PathSourceSpec], Field(discriminator="type")]


class ImportRequest(Strict):
    """The `eval.import` request: the source, the suite to import into (by id, else by name, created when
    missing), whether to add tasks the suite lacks, dry run, and `limit_files`: the most results files to read
    (1-100; discovery defaults to DEFAULT_LISTING_LIMIT). `metadata` is kept on the import (and a new suite)."""

    # pydantic's Field overloads infer Never as the default_factory's type for an Annotated union
    source: SourceSpec = Field(default_factory=HubSourceSpec)  # type: ignore[arg-type]
    suite_id: str | None = None
    suite_name: str | None = Field(None, min_length=1, max_length=255)
    suite_description: str | None = Field(None, max_length=10000)
    create_missing_tasks: bool = True
    dry_run: bool = False
    limit_files: int | None = Field(None, ge=1, le=100)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def parse(cls, data: dict[str, Any]) -> "ImportRequest":
        """Validate parsed JSON (a `source` without `type` is huggingface), turning pydantic's error into
        InvalidInput naming the first bad field (e.g. `source.repo`)."""
        if isinstance(data, dict) and isinstance(data.get("source"), dict):
            data = {**data, "source": {"type": "huggingface", **data["source"]}}
        return parse_model(cls, data, skip_loc=("huggingface", "path"))


@dataclass
class ImportResult:
    """What an import did (or, dry run, would do): the source {type, repo, revision (the resolved commit)},
    the suite and version it reached, counts, and `errors`: one {path, reason[, line, results_file]} per
    file that could not be read."""

    source: dict[str, Any]
    suite_id: str | None
    suite_version: int
    created_suite: bool
    created_suite_version: bool
    dry_run: bool
    discovered_files: int = 0
    imported_runs: int = 0
    skipped_runs: int = 0
    imported_samples: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    import_id: str | None = None  # the catalog record; None for a dry run

    def to_dict(self) -> dict[str, Any]:
        """The `eval.import` object the APIs serve (without import_id)."""
        out = {"object": "eval.import", **asdict(self)}
        out.pop("import_id")
        return out
