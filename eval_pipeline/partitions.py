"""Dagster partitions: suites now; models and tasks arrive with eval runs."""
import dagster as dg

suite_partitions_def = dg.DynamicPartitionsDefinition(name="suite")
