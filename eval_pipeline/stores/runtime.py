"""Open the catalog and the lake a Settings points at (front doors call this once)."""
from __future__ import annotations

from dataclasses import dataclass

from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.lake import Lake
from eval_pipeline.stores.settings import Settings


@dataclass
class Runtime:
    """One process's opened stores: its settings, the (migrated) catalog and the lake."""

    settings: Settings
    catalog: Catalog
    lake: Lake


def open_runtime(settings: Settings | None = None) -> Runtime:
    """Open the stores `settings` (default: Settings.from_env()) point at: the local folders are created and
    the catalog migrated to the newest Alembic revision."""
    settings = (settings or Settings.from_env()).prepare()
    catalog = Catalog(settings.database_url).migrate()
    return Runtime(settings, catalog, Lake(settings.lake_url, settings.s3_endpoint_url))
