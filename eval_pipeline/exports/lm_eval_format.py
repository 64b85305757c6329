"""lm-evaluation-harness 0.4.13's conventions for its output files, as the lm-eval export writes them: the
json.dumps calls of its results and samples files, its `sanitize_list` and sha256 `hash_string`, the task
and timestamp parts of its file names, and the run's generation settings in its gen_kwargs words.

lm-eval's own helpers come from `lm_eval/utils.py` (`handle_non_serializable`, `sanitize_task_name`).
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any, cast

# The run's generation settings in lm-eval's gen_kwargs words (what its --gen_kwargs would have said).
_GEN_KWARGS = {"stop": "until", "max_output_tokens": "max_gen_toks", "temperature": "temperature",
               "do_sample": "do_sample", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
               "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
               "repetition_penalty": "repetition_penalty", "seed": "seed"}


def _lm_eval_utils() -> Any:
    from lm_eval import utils  # deferred: lm_eval takes seconds to import; only this export format needs it

    return utils


def dumps_sample(sample: dict[str, Any]) -> str:
    """One samples line as lm-eval's save_results_samples writes it."""
    return json.dumps(sample, default=_lm_eval_utils().handle_non_serializable, ensure_ascii=False) + "\n"


def dumps_results(results: dict[str, Any]) -> str:
    """The text of a results file: the whole document indented by 2, non-ASCII kept, numpy values and sets
    made JSON (lm_eval/loggers/evaluation_tracker.py `save_results_aggregated`)."""
    return json.dumps(results, indent=2, default=_lm_eval_utils().handle_non_serializable, ensure_ascii=False)


def _sanitize(value: Any) -> Any:
    """lm-eval's sanitize_list (every leaf as its str()), except that a missing answer stays null rather than
    becoming the text "None"."""
    if value is None:
        return None
    if isinstance(value, list):
        return [_sanitize(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_sanitize(v) for v in value)
    return str(value)


def hash_string(text: str) -> str:
    """The hex sha256 of `text` in UTF-8 (lm_eval/utils.py `hash_string`)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def doc_hash(doc: Any) -> str:
    """A samples line's `doc_hash`: hash_string of the doc (a dataset row, or None) dumped as lm-eval's
    evaluator.py `evaluate` dumps it (indent 2, non-ASCII kept)."""
    return hash_string(json.dumps(doc, indent=2, default=_lm_eval_utils().handle_non_serializable,
                                  ensure_ascii=False))


def samples_task_name(name: str) -> str:
    """The task's name in its samples file name: as it is (lm-eval's), unless it could leave the folder."""
    if "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        return cast(str, _lm_eval_utils().sanitize_task_name(name))
    return name


def file_timestamp(unix_seconds: float | None) -> str:
    """lm-eval's `<ts>`: isoformat with ':' as '-' (no fraction when the microseconds are 0). UTC here, so an
    export of the same run names its files the same wherever it is made."""
    moment = datetime.fromtimestamp(unix_seconds, timezone.utc) if unix_seconds else datetime.now(timezone.utc)
    return moment.replace(tzinfo=None).isoformat().replace(":", "-")


def _gen_kwargs(task_kwargs: dict[str, Any], run_generation: dict[str, Any]) -> dict[str, Any]:
    """A generate_until request's gen_kwargs as lm-eval logs them: the task's, with the run's settings over
    them where the run set them (as lm-eval's --gen_kwargs)."""
    out = dict(task_kwargs or {})
    for ours, theirs in _GEN_KWARGS.items():
        if run_generation.get(ours) is not None:
            out[theirs] = run_generation[ours]
    return out
