"""Catalog tables: identities and state (suites, versions, tasks, imports, historical runs, files)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = String(64)


class Base(DeclarativeBase):
    """The declarative base of every catalog table (its metadata is what the migrations build)."""


class Suite(Base):
    """A named suite of an org (unique per org); `active_version` None means its latest version."""

    __tablename__ = "suites"
    __table_args__ = (UniqueConstraint("org_id", "name", name="uq_suites_org_name"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    org_id: Mapped[str] = mapped_column(String(128), index=True, default="org_default")
    team_id: Mapped[str] = mapped_column(String(128), default="team_default")
    created_by: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    active_version: Mapped[int | None] = mapped_column(Integer)  # None: the latest
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class SuiteVersion(Base):
    """Immutable once written: a numbered list of tasks at their versions."""

    __tablename__ = "suite_versions"
    __table_args__ = (UniqueConstraint("suite_id", "version"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    suite_id: Mapped[str] = mapped_column(ForeignKey("suites.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    import_id: Mapped[str | None] = mapped_column(ID)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[int] = mapped_column(BigInteger)


class SuiteVersionTask(Base):
    """One task of a suite version, pinned at its task version."""

    __tablename__ = "suite_version_tasks"
    suite_version_id: Mapped[str] = mapped_column(
        ForeignKey("suite_versions.id", ondelete="CASCADE"), primary_key=True
    )
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), primary_key=True)
    task_version: Mapped[int] = mapped_column(Integer)


class Task(Base):
    """A task (an lm-eval task by name): its request kind, lm-eval metric_list and filter_list, generation
    defaults, grading settings, and its current version (the inputs are per version)."""

    __tablename__ = "tasks"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    slug: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(32))
    eval_type: Mapped[str] = mapped_column(String(16))
    eval_mode: Mapped[str] = mapped_column(String(32))
    request_kind: Mapped[str] = mapped_column(String(32))
    metric_spec: Mapped[list[Any]] = mapped_column(JSON, default=list)  # lm-eval's metric_list entries
    filter_spec: Mapped[list[Any]] = mapped_column(JSON, default=list)  # lm-eval's filter_list entries
    generation_defaults: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The lm-eval settings grading needs beyond metrics and filters (target_delimiter, output_type...).
    grading: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    current_version: Mapped[int] = mapped_column(Integer)
    system_tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    user_tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class TaskVersion(Base):
    """One version of a task: its inputs file in the lake (None: no samples were imported) and its doc count."""

    __tablename__ = "task_versions"
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    inputs_file_id: Mapped[str | None] = mapped_column(ForeignKey("files.id"))
    inputs_sha256: Mapped[str | None] = mapped_column(String(64))
    n_docs: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[int] = mapped_column(BigInteger)


class Import(Base):
    """One historical import: its source (type, repo, revision), the suite version it filled, and its counts;
    `errors` lists the files that did not import, each {"path" or "results_file", "reason", ...}."""

    __tablename__ = "imports"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    source_type: Mapped[str] = mapped_column(String(32))
    source_repo: Mapped[str] = mapped_column(Text)
    source_revision: Mapped[str | None] = mapped_column(String(64))
    suite_id: Mapped[str] = mapped_column(ForeignKey("suites.id", ondelete="CASCADE"), index=True)
    suite_version: Mapped[int] = mapped_column(Integer)
    created_suite: Mapped[bool] = mapped_column(Boolean)
    created_suite_version: Mapped[bool] = mapped_column(Boolean)
    discovered_files: Mapped[int] = mapped_column(Integer)
    imported_runs: Mapped[int] = mapped_column(Integer)
    skipped_runs: Mapped[int] = mapped_column(Integer)
    imported_samples: Mapped[int] = mapped_column(Integer)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[int] = mapped_column(BigInteger)


class HistoricalRun(Base):
    """One imported lm-eval results file."""

    __tablename__ = "historical_runs"
    __table_args__ = (UniqueConstraint("suite_id", "source_key", "path", "fingerprint"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    # No foreign key: the import's record is written after its runs, each of which commits on its own.
    import_id: Mapped[str] = mapped_column(ID, index=True)
    suite_id: Mapped[str] = mapped_column(ForeignKey("suites.id", ondelete="CASCADE"), index=True)
    source_key: Mapped[str] = mapped_column(String(512))
    path: Mapped[str] = mapped_column(String(1024))
    fingerprint: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(512))
    model_args: Mapped[dict[str, Any] | str | None] = mapped_column(JSON)
    harness_version: Mapped[str | None] = mapped_column(String(64))
    git_hash: Mapped[str | None] = mapped_column(String(64))
    evaluated_at: Mapped[float | None] = mapped_column(Float)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    samples_file_id: Mapped[str | None] = mapped_column(ForeignKey("files.id"))
    n_samples: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[int] = mapped_column(BigInteger)


class HistoricalMetric(Base):
    """One (task or group, metric, filter) value of an imported run, with its stderr and, for mean metrics,
    the mean recomputed from the samples and whether it matches."""

    __tablename__ = "historical_metrics"
    __table_args__ = (UniqueConstraint("run_id", "task_name", "metric", "filter"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("historical_runs.id", ondelete="CASCADE"), index=True)
    task_name: Mapped[str] = mapped_column(String(255))
    task_id: Mapped[str | None] = mapped_column(ForeignKey("tasks.id"))
    is_group: Mapped[bool] = mapped_column(Boolean, default=False)
    metric: Mapped[str] = mapped_column(String(128))
    filter: Mapped[str] = mapped_column(String(128))
    value: Mapped[float | None] = mapped_column(Float)
    stderr: Mapped[float | None] = mapped_column(Float)
    n_samples: Mapped[int | None] = mapped_column(Integer)
    recomputed: Mapped[float | None] = mapped_column(Float)
    recomputed_matches: Mapped[bool | None] = mapped_column(Boolean)


class File(Base):
    """A file in the lake that the catalog hands out by id."""

    __tablename__ = "files"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    purpose: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(1024), unique=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[int] = mapped_column(BigInteger)


class Model(Base):
    """A named model of the registry: how to reach it (vllm engine or OpenAI-compatible endpoint)."""

    __tablename__ = "model_registry"
    name: Mapped[str] = mapped_column(String(512), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)  # the Dagster partition key
    backend: Mapped[str] = mapped_column(String(32))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    implicit: Mapped[bool] = mapped_column(Boolean, default=False)  # a local folder used by path
    created_at: Mapped[int] = mapped_column(BigInteger)


class Run(Base):
    """An eval run: models x tasks of one suite version, with its lifecycle and live counts."""

    __tablename__ = "eval_runs"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128), default="org_default")
    team_id: Mapped[str] = mapped_column(String(128), default="team_default")
    created_by: Mapped[str | None] = mapped_column(String(255))  # the API caller's X-On-Behalf-Of
    idempotency_key: Mapped[str | None] = mapped_column(String(255))  # unique per org (migration 0006)
    system_tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    user_tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # From its tasks at creation: manual when one is; mode the union (rule, model, "rule,model", manual)
    eval_type: Mapped[str] = mapped_column(String(16), default="auto")
    eval_mode: Mapped[str] = mapped_column(String(32), default="rule")
    # Kept by runs.py for filtered listings: lowercase "name id", and "|model|model|"
    search_text: Mapped[str] = mapped_column(Text, default="")
    model_list: Mapped[str] = mapped_column(Text, default="")
    name: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    suite_id: Mapped[str] = mapped_column(ForeignKey("suites.id"), index=True)
    suite_version: Mapped[int] = mapped_column(Integer)
    suite_version_id: Mapped[str] = mapped_column(ForeignKey("suite_versions.id"))
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # times queued again (retry, rerun-failed)
    # cli, api, dagster:<backfill id>, schedule:<schedule id>, nightly:<deployment schedule name>
    origin: Mapped[str] = mapped_column(String(255), index=True)
    models: Mapped[list[str]] = mapped_column(JSON)
    task_ids: Mapped[list[str] | None] = mapped_column(JSON)
    judge_model: Mapped[str | None] = mapped_column(String(512))
    embedding_model: Mapped[str | None] = mapped_column(String(512))
    generation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    request_total: Mapped[int] = mapped_column(Integer, default=0)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    artifact_file_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_ns: Mapped[int] = mapped_column(BigInteger, index=True)  # list order within one second
    started_at: Mapped[int | None] = mapped_column(BigInteger)
    completed_at: Mapped[int | None] = mapped_column(BigInteger)
    failed_at: Mapped[int | None] = mapped_column(BigInteger)
    cancelled_at: Mapped[int | None] = mapped_column(BigInteger)


class RunPartition(Base):
    """One (model, task) of a run: its planned requests, progress, and the chunks written so far."""

    __tablename__ = "eval_run_partitions"
    run_id: Mapped[str] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(String(512), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), primary_key=True)
    task_version: Mapped[int] = mapped_column(Integer)
    model_key: Mapped[str] = mapped_column(String(128))
    task_key: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))  # pending, running, done, failed, cancelled
    planned: Mapped[int] = mapped_column(Integer)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cached: Mapped[int] = mapped_column(Integer, default=0)
    # What makes its generations reusable by a later run (see generation/cache.py).
    model_fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    chunks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    dagster_run_id: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[int] = mapped_column(BigInteger)
    # What ran: the backend's resolved settings (dtype, max_model_len, tokenizer...), set when it answers.
    engine: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # How the task was graded: {"status": native | lm-eval-registry | predict-only | not-gradable, "reason"}.
    grading: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # What generating it cost, summed over its executions (a resume adds its own): seconds inside the
    # engine, those times the GPUs the engine held, and the generation step's wall time.
    engine_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    wall_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")


class Export(Base):
    """An export task: a run's bundle to an S3-compatible bucket (`object`) or the lake (`system`)."""

    __tablename__ = "exports"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"), index=True)
    storage_type: Mapped[str] = mapped_column(String(16))
    bucket: Mapped[str | None] = mapped_column(String(255))
    prefix: Mapped[str | None] = mapped_column(Text)
    content: Mapped[list[str]] = mapped_column(JSON)
    # bundle (samples.parquet/jsonl, metrics.json) or lm-eval (lm-eval 0.4.13's results and samples files)
    format: Mapped[str] = mapped_column(String(16), default="bundle", server_default="bundle")
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued, running, succeeded, failed
    location: Mapped[str | None] = mapped_column(Text)
    files: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_ns: Mapped[int] = mapped_column(BigInteger, index=True)
    started_at: Mapped[int | None] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)


class HumanGrade(Base):
    """A person's grade of one generated sample of a manual task (resubmitting replaces it)."""

    __tablename__ = "human_grades"
    run_id: Mapped[str] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(String(512), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), primary_key=True)
    doc_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    rationale: Mapped[str | None] = mapped_column(Text)
    grader: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class ApiKey(Base):
    """An API key of one org: only its sha256 is kept; the key is shown once, when created."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128), index=True)
    team_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # bearer (aksk: issue 5, Qianfan)
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)


class Schedule(Base):
    """A schedule of an org: an eval run made from `run` (a run request without the suite) at each tick of
    `cron` (wall-clock in `timezone`) or every `interval_seconds`. `next_run_at` is the next tick to
    evaluate (None when disabled); the webhook secret is kept only encrypted."""

    __tablename__ = "eval_schedules"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128), index=True)
    team_id: Mapped[str] = mapped_column(String(128))
    created_by: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    suite_id: Mapped[str] = mapped_column(ForeignKey("suites.id", ondelete="CASCADE"), index=True)
    suite_version: Mapped[int | None] = mapped_column(Integer)  # None: the suite's active version at each tick
    cron: Mapped[str | None] = mapped_column(String(255))
    interval_seconds: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64))
    overlap_policy: Mapped[str] = mapped_column(String(16))  # skip | buffer_one | allow_all
    enabled: Mapped[bool] = mapped_column(Boolean)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    run: Mapped[dict[str, Any]] = mapped_column(JSON)
    regression: Mapped[dict[str, Any]] = mapped_column(JSON)  # {alpha, min_drop}
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    next_run_at: Mapped[int | None] = mapped_column(BigInteger, index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_ns: Mapped[int] = mapped_column(BigInteger, index=True)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class ScheduleTick(Base):
    """One tick of a schedule (or a trigger): unique per (schedule, kind, tick time), so a tick makes at
    most one run. status: claimed (being evaluated) | created | skipped | buffered | failed."""

    __tablename__ = "eval_schedule_ticks"
    __table_args__ = (UniqueConstraint("schedule_id", "kind", "tick_at", name="uq_schedule_ticks_tick"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    schedule_id: Mapped[str] = mapped_column(ForeignKey("eval_schedules.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # tick | trigger
    tick_at: Mapped[int] = mapped_column(BigInteger)  # the tick's time (Unix seconds)
    status: Mapped[str] = mapped_column(String(16), index=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("eval_runs.id", ondelete="SET NULL"), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class WebhookDelivery(Base):
    """One webhook event of a schedule (unique per schedule, run attempt and event type), delivered by the
    orchestration side with bounded retries; `attempts` records each try {attempt, at, status_code, error,
    duration_ms}. status: pending | delivered | failed."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("schedule_id", "run_id", "run_attempt", "event_type", name="uq_webhook_event"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    schedule_id: Mapped[str] = mapped_column(ForeignKey("eval_schedules.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[str] = mapped_column(String(64))  # no foreign key: the record outlives a deleted run
    run_attempt: Mapped[int] = mapped_column(Integer)
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    next_attempt_at: Mapped[int | None] = mapped_column(BigInteger, index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    delivered_at: Mapped[int | None] = mapped_column(BigInteger)


class RunOutcome(Base):
    """What a scheduled run's end meant, recorded once per (run, attempt, terminal status): its
    comparisons with the schedule's previous completed run and the imported baseline, the regressions
    among them, and that its webhook events are queued. A run retried or rerun gets a new one when it ends
    again; `error` says why it could not be compared, if so."""

    __tablename__ = "eval_run_outcomes"
    run_id: Mapped[str] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)  # the run's terminal status
    schedule_key: Mapped[str] = mapped_column(String(255), index=True)  # the run origin: schedule:<id>, nightly:...
    previous_run_id: Mapped[str | None] = mapped_column(String(64))
    comparisons: Mapped[int] = mapped_column(Integer)
    regressions: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_ns: Mapped[int] = mapped_column(BigInteger)
