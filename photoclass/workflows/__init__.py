"""The pipelines that string the stages together: train (train.py), evaluate a run
(evaluate.py), sweep (sweep.py). The public API re-exports them from `photoclass`."""
