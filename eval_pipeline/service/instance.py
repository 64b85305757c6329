"""The Dagster instance of a home: where the service records runless materialisations, adds dynamic
partitions and finds the Dagster runs of an eval run."""
from __future__ import annotations

import os

import dagster as dg

from eval_pipeline.stores.runtime import Runtime


def dagster_instance(rt: Runtime) -> dg.DagsterInstance:
    """The Dagster instance of this home (DAGSTER_HOME, unless the environment sets it)."""
    os.environ.setdefault("DAGSTER_HOME", str(rt.settings.dagster_home))
    return dg.DagsterInstance.get()
