"""Request validation shared by the front doors: pydantic models whose errors name the bad field."""
from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from eval_pipeline.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Unknown fields are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid")


def parse_model(cls: type[M], data: Any, *, skip_loc: tuple[str, ...] = ()) -> M:
    """Validate `data` (parsed JSON or a mapping) as `cls` and return the model.

    Raises InvalidInput for pydantic's first error, naming its field path (`a.b[0]`, or "body"); the path
    parts in `skip_loc` (e.g. a union's tag) are left out of it.
    """
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ""
        for p in err["loc"]:
            if p in skip_loc:
                continue
            loc += f"[{p}]" if isinstance(p, int) else (f".{p}" if loc else str(p))
        raise InvalidInput(loc or "body", err["msg"]) from None
