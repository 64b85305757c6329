import dagster as dg


class GenerationThresholds(dg.ConfigurableResource):
    """Limits the blocking generation checks hold each partition to (fractions of its requests)."""

    max_failed_rate: float = 0.05
    max_empty_rate: float = 0.5
