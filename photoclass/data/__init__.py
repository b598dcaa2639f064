"""The data's first stage: scan a folder, decode safely, find duplicates, split, cache."""
