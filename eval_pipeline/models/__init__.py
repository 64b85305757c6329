"""The model registry: the names users put in a run, and how each model is reached."""
