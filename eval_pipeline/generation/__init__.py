"""Generation: a run's requests for one (model, task), answered by a backend, written in atomic chunks."""
