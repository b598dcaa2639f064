"""Evaluation: metrics, plots, and re-evaluating a saved run."""
