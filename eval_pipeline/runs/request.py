"""An eval run's inputs, in the brief's shape: every constraint checked, aliases resolved to one form."""
from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from eval_pipeline.errors import InvalidInput
from eval_pipeline.validation import Strict, parse_model

DEFAULT_CHUNK = 1000  # max_workflow_sample_activities when the run does not say
DEFAULT_BOOTSTRAP_ITERS = 100_000  # lm-eval's default; corpus metrics scored in Python cap it (scoring/corpus.py)
DEFAULT_CONCURRENCY = 4


class GenerationConfig(Strict):
    """Generation settings of a run; None means "the task's own setting" (lm-eval's gen_kwargs)."""

    instructions: str | None = None
    temperature: float | None = Field(None, ge=0, le=10)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0, le=1)
    max_output_tokens: int | None = Field(None, ge=1, le=1_000_000)
    max_gen_toks: int | None = Field(None, ge=1, le=1_000_000)  # lm-eval's name for max_output_tokens
    stop: str | list[str] | None = None
    until: list[str] | None = None  # lm-eval's name for stop
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    repetition_penalty: float | None = Field(None, gt=0, le=10)
    do_sample: bool | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    chat_template_kwargs: dict[str, Any] | None = None
    prefill_think: bool | str | None = None
    extra_body: dict[str, Any] | None = None
    use_cache: bool | None = None
    timeout_seconds: int | None = Field(None, ge=1, le=86_400)
    max_retries: int | None = Field(None, ge=0, le=100)
    max_empty_retries: int | None = Field(None, ge=0, le=100)
    # Accepted and kept with the run for the API's sake; the generation backends do not use them yet.
    max_tool_calls: int | None = Field(None, ge=0)
    reasoning: Any = None
    text: Any = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    truncation: Literal["auto", "disabled"] | None = None
    service_tier: Literal["auto", "default", "flex", "priority"] | None = None

    @field_validator("stop", "until")
    @classmethod
    def _stop_strings(cls, v: str | list[str] | None) -> str | list[str] | None:
        items = [v] if isinstance(v, str) else v
        if items is not None and any(not s for s in items):
            raise ValueError("stop strings must be non-empty")
        return v

    @model_validator(mode="after")
    def _aliases_agree(self) -> Self:
        if self.max_output_tokens and self.max_gen_toks and self.max_output_tokens != self.max_gen_toks:
            raise InvalidInput("generation.max_gen_toks",
                               "differs from max_output_tokens (they are the same setting)")
        return self

    def normalised(self) -> dict[str, Any]:
        """The stored form: aliases folded (max_output_tokens, stop as a list), unset fields left out."""
        out = self.model_dump(exclude_none=True, exclude={"max_gen_toks", "until", "stop"})
        max_tokens = self.max_output_tokens or self.max_gen_toks
        if max_tokens:
            out["max_output_tokens"] = max_tokens
        stops = ([self.stop] if isinstance(self.stop, str) else list(self.stop or [])) + list(self.until or [])
        if stops:
            out["stop"] = list(dict.fromkeys(stops))
        return out


class RunRequest(Strict):
    """The body of a create-run request (MKA1 `POST /api/v1/llm/evals/runs`, or the CLI's): suite, models,
    tasks, graders, generation and execution settings. Validation raises InvalidInput naming the field."""

    suite_id: str = Field(min_length=1)
    suite_version: int | None = Field(None, ge=1, le=9007199254740991)
    models: list[str] = Field(min_length=1, max_length=20)
    task_ids: list[str] | None = Field(None, min_length=1)
    judge_model: str | None = Field(None, min_length=1)
    embedding_model: str | None = Field(None, min_length=1)
    # The judge's rubric prompt with {question}, {reference} and {prediction}; default: grading/judge.py's
    judge_rubric: str | None = Field(None, min_length=1, max_length=20000)
    # ignore: without pydantic's mypy plugin, mypy infers Never for a model class with Field(None, ...) fields
    generation: GenerationConfig = Field(default_factory=GenerationConfig)  # type: ignore[arg-type]
    generation_concurrency: int | None = Field(None, ge=1, le=256)
    concurrency: int | None = Field(None, ge=1, le=256)  # the brief's older name for the same
    grader_concurrency: int | None = Field(None, ge=1, le=256)
    bootstrap_iters: int | None = Field(None, ge=0, le=1_000_000)
    max_samples_per_task: int | None = Field(None, ge=1, le=9007199254740991)
    max_workflow_sample_activities: int | None = Field(None, ge=100, le=50000)
    metadata: dict[str, str] = Field(default_factory=dict)
    name: str | None = Field(None, min_length=1, max_length=255)
    description: str | None = Field(None, max_length=10000)

    @field_validator("models")
    @classmethod
    def _model_names(cls, v: list[str]) -> list[str]:
        for i, name in enumerate(v):
            if not name or not name.strip():
                raise ValueError(f"models[{i}] is empty")
        if len(set(v)) != len(v):
            raise ValueError("the same model is listed twice")
        return v

    @field_validator("judge_rubric")
    @classmethod
    def _rubric(cls, v: str | None) -> str | None:
        if v is not None and "{prediction}" not in v:
            raise ValueError("must contain {prediction} (and may use {question} and {reference})")
        return v

    @field_validator("task_ids")
    @classmethod
    def _task_ids(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("the same task is listed twice")
        return v

    @model_validator(mode="after")
    def _concurrency_aliases(self) -> Self:
        if self.concurrency and self.generation_concurrency and self.concurrency != self.generation_concurrency:
            raise InvalidInput("concurrency", "differs from generation_concurrency (they are the same setting)")
        return self

    @classmethod
    def parse(cls, data: object) -> "RunRequest":
        """The request from a parsed JSON body. Raises InvalidInput naming the field (`body` when it is not
        an object; e.g. `models[0]`, `generation.top_p` otherwise)."""
        if not isinstance(data, dict):
            raise InvalidInput("body", "must be a JSON object")
        return parse_model(cls, data)

    def settings(self) -> dict[str, Any]:
        """The run's execution settings, defaults filled in: generation_concurrency and grader_concurrency
        (requests in flight), judge_rubric (None: the default rubric), bootstrap_iters, max_samples_per_task
        (None: all), max_workflow_sample_activities (requests per chunk)."""
        return {
            "generation_concurrency": self.generation_concurrency or self.concurrency or DEFAULT_CONCURRENCY,
            "grader_concurrency": self.grader_concurrency or DEFAULT_CONCURRENCY,
            "judge_rubric": self.judge_rubric,
            "bootstrap_iters": DEFAULT_BOOTSTRAP_ITERS if self.bootstrap_iters is None else self.bootstrap_iters,
            "max_samples_per_task": self.max_samples_per_task,
            "max_workflow_sample_activities": self.max_workflow_sample_activities or DEFAULT_CHUNK,
        }
