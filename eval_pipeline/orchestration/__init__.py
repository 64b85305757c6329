"""Dagster's side: the one Definitions, the jobs, the sensors, and the server's own worker."""
