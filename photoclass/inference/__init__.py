"""Using a trained run: predict photos, sort them into class folders."""
