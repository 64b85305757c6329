"""Files the catalog hands out by id (run reports, task inputs, system-storage export files), read
through the org that owns them."""
from __future__ import annotations

from typing import Any, Iterator

from eval_pipeline.stores import file_access
from eval_pipeline.stores.runtime import Runtime


def get_file(rt: Runtime, file_id: str, *, org_id: str | None = None) -> dict[str, Any]:
    """The file object of a run artifact, a suite's task inputs or a system-storage export file the org
    owns. Raises NotFound."""
    return file_access.get_file(rt.catalog, file_id, org_id=org_id)


def file_content(rt: Runtime, file_id: str, *, org_id: str | None = None) -> tuple[Iterator[bytes], str, str]:
    """(byte pieces, media type, file name) of such a file. Raises NotFound."""
    return file_access.file_content(rt.catalog, rt.lake, file_id, org_id=org_id)


def file_uri(rt: Runtime, file_id: str) -> str:
    """Where a file the catalog hands out lies in the lake (a path or an s3:// URI). Raises NotFound."""
    return rt.lake.uri(file_access.file_path(rt.catalog, file_id))

