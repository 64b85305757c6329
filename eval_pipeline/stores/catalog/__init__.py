"""The catalog: a SQL database (SQLite by default, PostgreSQL in production) for identities and state."""
from eval_pipeline.stores.catalog.store import Catalog

__all__ = ["Catalog"]
