"""One resumable, logged training entry point per model: `python -m xscene_core.train.<model>`."""
