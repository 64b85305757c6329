"""Open the catalog and the lake a Settings points at (front doors call this once)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from eval_pipeline.catalog import Catalog
from eval_pipeline.lake import Lake
from eval_pipeline.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    catalog: Catalog
    lake: Lake


def open_runtime(settings: Settings | None = None) -> Runtime:
    settings = (settings or Settings.from_env()).prepare()
    catalog = Catalog(settings.database_url).migrate()
    return Runtime(settings, catalog, Lake(settings.lake_url, settings.s3_endpoint_url))


def dagster_instance(rt: Runtime):
    """The Dagster instance of this home (DAGSTER_HOME, unless the environment sets it)."""
    os.environ.setdefault("DAGSTER_HOME", str(rt.settings.dagster_home))
    import dagster as dg

    return dg.DagsterInstance.get()
