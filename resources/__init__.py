"""Dagster resources: thin ConfigurableResources over the core's catalog, lake and Hub access."""
from resources.catalog import CatalogResource
from resources.hub import HubResource
from resources.lake import LakeResource
from resources.thresholds import GenerationThresholds

__all__ = ["CatalogResource", "GenerationThresholds", "HubResource", "LakeResource"]
