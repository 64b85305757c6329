"""Schedules of eval runs: their fields and records, ticks under an overlap policy, regression alerts
against the previous scheduled run and the imported baseline, signed webhooks, and the deployment's
nightly file."""
