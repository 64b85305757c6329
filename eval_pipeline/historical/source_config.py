"""The deployment's list of sources to import (a YAML file), read into validated import requests."""
from __future__ import annotations

from pathlib import Path

import yaml

from eval_pipeline.errors import InvalidInput
from eval_pipeline.historical.request import ImportRequest


def load_import_requests(path: str | Path) -> list[ImportRequest]:
    """`imports:` is a list of import requests in the API's shape; errors name the file and entry."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise InvalidInput(str(path), f"not valid YAML: {e}") from None
    entries = doc.get("imports") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise InvalidInput(str(path), "expected a top-level 'imports:' list")
    requests = []
    for i, entry in enumerate(entries):
        try:
            requests.append(ImportRequest.parse(entry))
        except InvalidInput as e:
            raise InvalidInput(f"{path}: imports[{i}].{e.field}", e.message) from None
    return requests
