"""Dagster partitions: suites; models and tasks (slug keys; the names live in the catalog) and their grid."""
import dagster as dg

suite_partitions_def = dg.DynamicPartitionsDefinition(name="suite")
model_partitions_def = dg.DynamicPartitionsDefinition(name="model")
task_partitions_def = dg.DynamicPartitionsDefinition(name="task")
export_partitions_def = dg.DynamicPartitionsDefinition(name="export")  # one per export task id
# Keys read "model|task": Dagster orders the dimensions by name.
generation_partitions_def = dg.MultiPartitionsDefinition({"model": model_partitions_def,
                                                          "task": task_partitions_def})


def split_key(key: str) -> tuple[str, str]:
    """(model key, task key) of a generation partition key."""
    dims = generation_partitions_def.get_partition_key_from_str(key).keys_by_dimension
    return dims["model"], dims["task"]
