"""The historical import's inputs and result, in the brief's shape (`eval.import`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal, Union

from pydantic import Field

from eval_pipeline.sources import DEFAULT_HF_REPO
from eval_pipeline.validation import Strict, parse_model

DEFAULT_SUITE_NAME = "Historical lm-eval harness results"
DEFAULT_LISTING_LIMIT = 50


class HubSourceSpec(Strict):
    type: Literal["huggingface"] = "huggingface"
    repo: str = Field(DEFAULT_HF_REPO, min_length=3, pattern=r"^[\w.-]+/[\w.-]+$")
    revision: str = Field("main", min_length=1, max_length=255)
    path_prefix: str | None = None
    files: list[str] | None = Field(None, min_length=1)


class PathSourceSpec(Strict):
    type: Literal["path"] = "path"
    url: str = Field(min_length=1)
    path_prefix: str | None = None
    files: list[str] | None = Field(None, min_length=1)


SourceSpec = Annotated[Union[HubSourceSpec, PathSourceSpec], Field(discriminator="type")]


class ImportRequest(Strict):
    source: SourceSpec = Field(default_factory=HubSourceSpec)
    suite_id: str | None = None
    suite_name: str | None = Field(None, min_length=1, max_length=255)
    suite_description: str | None = Field(None, max_length=10000)
    create_missing_tasks: bool = True
    dry_run: bool = False
    limit_files: int | None = Field(None, ge=1, le=100)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def parse(cls, data: dict) -> "ImportRequest":
        """Validate, turning pydantic's error into InvalidInput naming the first bad field."""
        if isinstance(data, dict) and isinstance(data.get("source"), dict):
            data = {**data, "source": {"type": "huggingface", **data["source"]}}
        return parse_model(cls, data, skip_loc=("huggingface", "path"))


@dataclass
class ImportResult:
    source: dict
    suite_id: str | None
    suite_version: int
    created_suite: bool
    created_suite_version: bool
    dry_run: bool
    discovered_files: int = 0
    imported_runs: int = 0
    skipped_runs: int = 0
    imported_samples: int = 0
    errors: list[dict] = field(default_factory=list)
    import_id: str | None = None  # the catalog record; None for a dry run

    def to_dict(self) -> dict:
        out = {"object": "eval.import", **asdict(self)}
        out.pop("import_id")
        return out
