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
        env, default = DEFAULTS[field]
        value, source = getattr(self, field), f"thresholds.{field}"
        if value is None:
            raw, source = os.environ.get(env), env
            try:
                value = float(raw) if raw else default
            except ValueError:
                raise ValueError(f"{env}={raw!r} is not a number") from None
        if not 0.0 <= float(value) <= 1.0:  # NaN fails this too
            raise ValueError(f"{source}={value!r} must be a fraction from 0 to 1")
        return float(value)

    def limits(self) -> tuple[float, float]:
        """(max failed rate, max empty rate), each a fraction in [0, 1]. Raises ValueError naming the variable
        or field that is not a number or out of range."""
        return self._resolve("max_failed_rate"), self._resolve("max_empty_rate")
