"""The catalog as a Dagster resource."""
from typing import Optional

import dagster as dg
from pydantic import PrivateAttr

from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.settings import Settings


class CatalogResource(dg.ConfigurableResource):
    """The catalog database. Unset, the URL comes from the environment (EVAL_PIPELINE_DATABASE_URL or the
    home's SQLite file) at run time, so a password in it never enters run config."""

    database_url: Optional[str] = None
    _catalog: Optional[Catalog] = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Open (and migrate) the catalog once per run."""
        url = self.database_url or Settings.from_env().prepare().database_url
        self._catalog = Catalog(url).migrate()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Close the catalog's connections."""
        if self._catalog is not None:
            self._catalog.dispose()

    @property
    def catalog(self) -> Catalog:
        """The catalog this run reads and writes."""
        return self._catalog
