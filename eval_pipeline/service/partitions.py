"""Dagster partitions: suites; models and tasks (slug keys; the names live in the catalog) and their grid;
export tasks."""
import dagster as dg

SUITE, MODEL, TASK, EXPORT = "suite", "model", "task", "export"  # the dynamic partitions' names

suite_partitions_def = dg.DynamicPartitionsDefinition(name=SUITE)
model_partitions_def = dg.DynamicPartitionsDefinition(name=MODEL)
task_partitions_def = dg.DynamicPartitionsDefinition(name=TASK)
export_partitions_def = dg.DynamicPartitionsDefinition(name=EXPORT)  # one per export task id
# Keys read "model|task": Dagster orders the dimensions by name.
generation_partitions_def = dg.MultiPartitionsDefinition({"model": model_partitions_def,
                                                          "task": task_partitions_def})


def split_key(key: str) -> tuple[str, str]:
    """(model key, task key) of a generation partition key "model|task"."""
    dims = generation_partitions_def.get_partition_key_from_str(key).keys_by_dimension
    return dims["model"], dims["task"]
