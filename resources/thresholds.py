"""The limits of the blocking generation checks, as a Dagster resource."""
import os
from typing import Optional

import dagster as dg

DEFAULTS = {"max_failed_rate": ("EVAL_PIPELINE_MAX_FAILED_RATE", 0.05),
            "max_empty_rate": ("EVAL_PIPELINE_MAX_EMPTY_RATE", 0.5)}


class GenerationThresholds(dg.ConfigurableResource):
    """Limits the blocking generation checks hold each partition to (fractions of its requests). A field
    left unset comes from its environment variable when the check runs (EVAL_PIPELINE_MAX_FAILED_RATE,
    EVAL_PIPELINE_MAX_EMPTY_RATE), else its default (0.05, 0.5); run config overrides both."""

    max_failed_rate: Optional[float] = None
    max_empty_rate: Optional[float] = None

    def _resolve(self, field: str) -> float:
        value = getattr(self, field)
        if value is not None:
            return float(value)
        env, default = DEFAULTS[field]
        raw = os.environ.get(env)
        try:
            return float(raw) if raw else default
        except ValueError:
            raise ValueError(f"{env}={raw!r} is not a number") from None

    def limits(self) -> tuple[float, float]:
        """(max failed rate, max empty rate), each a fraction in [0, 1]."""
        return self._resolve("max_failed_rate"), self._resolve("max_empty_rate")
