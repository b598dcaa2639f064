"""Training: the loop, callbacks, and `train()` from a folder to an evaluated run."""
