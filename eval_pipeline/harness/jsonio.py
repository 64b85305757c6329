"""JSON decoding for lm-eval files: orjson for speed, Python's json for what only it accepts."""
from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: bytes | str) -> Any:
    """Decode; NaN and Infinity, which Python's json (and so lm-eval) writes, are accepted.

    Raises json.JSONDecodeError (a ValueError) for anything else that is not JSON.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
