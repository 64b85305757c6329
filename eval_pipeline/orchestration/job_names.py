"""The names of the jobs the front doors launch, importable without loading the Definitions (which
import every asset module)."""

GENERATION_JOB = "generation"  # generations, grades and metrics of (model, task) partitions
EXPORT_JOB = "export"  # one export task's bundle
