"""The generation cache: an earlier answer to the same request by the same model, with the same
settings, is reused. The key (GenRequest.cache_key) covers the model's identity (name, revision, local
files), the request payload and the normalised generation settings; the catalog says which earlier
partitions of that model and task might hold such answers, and their chunk files hold the rows."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select

from eval_pipeline.generation.rows import Outcome, outcome_from_row
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.lake import Lake

_COLUMNS = ["cache_key", "output_text", "output_token_ids", "finish_reason", "input_tokens", "output_tokens",
            "logprob", "is_greedy", "error"]


def cached_outcomes(catalog: Catalog, lake: Lake, *, run_id: str, model_fingerprint: str, task_id: str,
                    wanted: set[str]) -> dict[str, Outcome]:
    """{cache key: Outcome} for those of `wanted` that earlier runs' partitions of the same model (by
    fingerprint) and task answered without error; the first answer found wins. `run_id`'s own are skipped."""
    with catalog.session() as s:
        chunk_lists = s.scalars(select(t.RunPartition.chunks).where(
            t.RunPartition.model_fingerprint == model_fingerprint, t.RunPartition.task_id == task_id,
            t.RunPartition.run_id != run_id)).all()
    found: dict[str, Outcome] = {}
    wanted_keys = pa.array(sorted(wanted), pa.string())
    for chunks in chunk_lists:
        for chunk in chunks:
            if not wanted - found.keys():
                return found
            if lake.exists(chunk["path"]):
                _add_answers(lake, chunk["path"], wanted_keys, found)
    return found


def _add_answers(lake: Lake, path: str, wanted_keys: pa.Array, found: dict[str, Outcome]) -> None:
    """The chunk's rows answering a wanted key without an error, kept where no answer was found yet."""
    table = lake.read_table(path, columns=_COLUMNS)
    table = table.filter(pc.and_(pc.is_null(table.column("error")),
                                 pc.is_in(table.column("cache_key"), value_set=wanted_keys)))
    for row in table.to_pylist():
        found.setdefault(row["cache_key"], outcome_from_row(row))



def superseded_dir(folder: str) -> str:
    """Where rerun-failed moves a partition's chunks that held failures (see rerun.py)."""
    return f"{folder}/superseded"


def superseded_outcomes(lake: Lake, folder: str, wanted: set[str]) -> dict[str, Outcome]:
    """The run's own earlier answers in chunks rerun-failed set aside: a rerun generates only what
    failed, whatever the run's use_cache says (these are this run's answers, not another's)."""
    found: dict[str, Outcome] = {}
    prefix = superseded_dir(folder)
    if not wanted or not lake.exists(prefix):
        return found
    wanted_keys = pa.array(sorted(wanted), pa.string())
    for path in sorted(lake.list(prefix)):
        _add_answers(lake, path, wanted_keys, found)
    return found
