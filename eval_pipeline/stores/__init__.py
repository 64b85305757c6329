"""The stores: the catalog (SQL), the lake (Parquet on fsspec), results sources, files, API keys, settings."""
