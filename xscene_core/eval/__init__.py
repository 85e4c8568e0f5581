"""Evaluation: metrics, the speed bench (`python -m xscene_core.eval.bench`) and the quality report
(`python -m xscene_core.eval.quality`)."""
