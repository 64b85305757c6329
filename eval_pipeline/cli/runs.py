"""CLI groups `models` and `runs` (registered on the main group in main.py)."""
from __future__ import annotations

import json

import click

from eval_pipeline import service
from eval_pipeline.cli.common import _emit, _metadata, front_door, job
from eval_pipeline.orchestration.job_names import GENERATION_JOB


@click.group()
def models() -> None:
    """The model registry: names a run can use, and how each is reached."""


@models.command("add")
@click.argument("name")
@click.option("--backend", type=click.Choice(["vllm", "openai"]), default="vllm", show_default=True)
@click.option("--path", help="vllm: a local model folder or a Hub id.")
@click.option("--revision", help="vllm: the Hub revision.")
@click.option("--dtype", type=click.Choice(["auto", "float32", "float16", "bfloat16"]))
@click.option("--max-model-len", type=int)
@click.option("--tensor-parallel-size", type=int)
@click.option("--gpu-memory-utilization", type=float)
@click.option("--chat", is_flag=True, help="vllm: apply the tokenizer's chat template to prompts.")
@click.option("--add-bos-token/--no-add-bos-token", default=None,
              help="Force BOS on or off (lm-eval's add_bos_token; default: the tokenizer's own choice).")
@click.option("--skip-special-tokens", is_flag=True,
              help="vllm: drop special tokens from generated text (as lm-eval's hf backend does).")
@click.option("--base-url", help="openai: the endpoint, e.g. http://host:8000/v1.")
@click.option("--api", type=click.Choice(["completions", "chat"]))
@click.option("--served-name", help="openai: the model name the endpoint knows (default NAME).")
@click.option("--header", "headers", multiple=True, help="openai: K=V request header (repeatable).")
@click.option("--api-key-env", help="openai: NAME of the environment variable holding the API key.")
@click.option("--tokenizer", help="openai: the model's tokenizer (folder or Hub id) for loglikelihood requests.")
@click.option("--max-length", type=int, help="openai: the model's window in tokens (default: the server's).")
@click.option("--connect-timeout", type=float)
@click.option("--read-timeout", type=float)
@click.option("--default", "is_default", is_flag=True, help="What `auto` means from now on.")
@click.option("--replace", is_flag=True, help="Overwrite an existing entry of this name.")
@front_door
def models_add(name: str, backend: str, headers: tuple[str, ...], is_default: bool, replace: bool, **opts) -> None:
    """Register a model under NAME."""
    options = {"backend": backend, **{k: v for k, v in opts.items()
                                      if v is not None and (v is not False or k == "add_bos_token")}}
    if headers:
        options["headers"] = _metadata(headers)
    _emit(service.add_model(service.open_runtime(), name, options, default=is_default, replace=replace).to_dict())


@models.command("list")
@front_door
def models_list() -> None:
    """Print the model registry."""
    _emit({"object": "list", "data": [m.to_dict() for m in service.list_models(service.open_runtime())]})


@models.command("remove")
@click.argument("name")
@front_door
def models_remove(name: str) -> None:
    """Remove NAME from the model registry."""
    service.remove_model(service.open_runtime(), name)
    _emit({"object": "model.deleted", "name": name, "deleted": True})


@click.group("runs")
def runs_group() -> None:
    """Eval runs: models x tasks of a suite version."""


def _json_option(value: str | None, name: str) -> dict:
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except ValueError as e:
        raise click.BadParameter(f"not JSON: {e}", param_hint=name) from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint=name)
    return parsed


@runs_group.command("create")
@click.option("--suite-id", required=True)
@click.option("--suite-version", type=int)
@click.option("--model", "models_", multiple=True, required=True, help="A model name, path or `auto` (repeatable).")
@click.option("--task-id", "task_ids", multiple=True, help="Only these tasks (repeatable).")
@click.option("--judge-model")
@click.option("--embedding-model")
@click.option("--temperature", type=float)
@click.option("--top-p", type=float)
@click.option("--top-k", type=int)
@click.option("--seed", type=int)
@click.option("--max-gen-toks", type=int, help="Alias: max_output_tokens.")
@click.option("--until", multiple=True, help="A stop string (repeatable).")
@click.option("--instructions", help="System message for chat models.")
@click.option("--chat-template-kwargs", help='JSON, e.g. {"enable_thinking": false}.')
@click.option("--generation", "generation_json", help="Any further generation settings, as a JSON object.")
@click.option("--no-cache", is_flag=True, help="Do not reuse earlier generations.")
@click.option("--max-samples-per-task", type=int)
@click.option("--generation-concurrency", type=int)
@click.option("--max-workflow-sample-activities", type=int, help="Requests per chunk (100-50000).")
@click.option("--name")
@click.option("--description")
@click.option("--metadata", multiple=True, help="K=V (repeatable).")
@click.option("--wait", is_flag=True, help="Execute the run's Dagster runs here and return when it is terminal.")
@front_door
def runs_create(suite_id, suite_version, models_, task_ids, judge_model, embedding_model, temperature, top_p,
                top_k, seed, max_gen_toks, until, instructions, chat_template_kwargs, generation_json, no_cache,
                max_samples_per_task, generation_concurrency, max_workflow_sample_activities, name,
                description, metadata, wait) -> None:
    """Create an eval run (queued for the sensor, or executed here with --wait); prints the eval.run."""
    generation = _json_option(generation_json, "--generation")
    flags = {"temperature": temperature, "top_p": top_p, "top_k": top_k, "seed": seed,
             "max_gen_toks": max_gen_toks, "until": list(until) or None, "instructions": instructions,
             "chat_template_kwargs": _json_option(chat_template_kwargs, "--chat-template-kwargs") or None,
             "use_cache": False if no_cache else None}
    generation.update({k: v for k, v in flags.items() if v is not None})
    body = {"suite_id": suite_id, "suite_version": suite_version, "models": list(models_),
            "task_ids": list(task_ids) or None, "judge_model": judge_model, "embedding_model": embedding_model,
            "generation": generation, "max_samples_per_task": max_samples_per_task,
            "generation_concurrency": generation_concurrency,
            "max_workflow_sample_activities": max_workflow_sample_activities, "name": name,
            "description": description, "metadata": _metadata(metadata)}
    rt = service.open_runtime()
    run = service.create_run(rt, {k: v for k, v in body.items() if v is not None})
    _emit(service.execute_run(rt, run["id"], job(GENERATION_JOB)) if wait else run)


@runs_group.command("get")
@click.argument("run_id")
@click.option("--partitions", is_flag=True, help="Include each (model, task) partition's progress.")
@front_door
def runs_get(run_id: str, partitions: bool) -> None:
    """Print the run (eval.run)."""
    _emit(service.get_run(service.open_runtime(), run_id, partitions=partitions))


@runs_group.command("list")
@click.option("--status")
@click.option("--suite-id")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--after", help="The last id of the previous page.")
@front_door
def runs_list(status, suite_id, limit, after) -> None:
    """Print a page of runs, newest first."""
    data = service.list_runs(service.open_runtime(), status=status, suite_id=suite_id, limit=limit + 1, after=after)
    page = data[:limit]
    _emit({"object": "list", "data": page, "has_more": len(data) > limit,
           "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None})


@runs_group.command("cancel")
@click.argument("run_id")
@front_door
def runs_cancel(run_id: str) -> None:
    """Stop the run: no new work starts; running partitions stop after their chunk in flight."""
    _emit(service.cancel_run(service.open_runtime(), run_id))


@runs_group.command("delete")
@click.argument("run_id")
@front_door
def runs_delete(run_id: str) -> None:
    """Delete a finished run's records and files (cancel a working run first)."""
    _emit(service.delete_run(service.open_runtime(), run_id))


@runs_group.command("resume")
@click.argument("run_id")
@click.option("--wait", is_flag=True, help="Execute the remaining work here and return when terminal.")
@front_door
def runs_resume(run_id: str, wait: bool) -> None:
    """Take up a failed or interrupted run: chunks already written are kept, the rest is generated."""
    rt = service.open_runtime()
    run = service.resume_run(rt, run_id, requeue=not wait)
    _emit(service.execute_run(rt, run_id, job(GENERATION_JOB)) if wait else run)
