"""Suites and their immutable versions, the tasks they pin (with their evaluation inputs), manifests and datasets."""
