"""Data checks on Great Expectations, as plain functions the Dagster asset checks call."""
